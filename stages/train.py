"""Stage train@<model>: train one top-down pose model (HRNet recipe); resumable, DDP under torchrun.

``--model NAME`` trains the entry NAME of ``models``, its backbone starting from ``--init``
(the pretrain stage's HRNet); it writes ``<out>/model.pt`` (state dict) and ``<out>/model.json``
(structure and input settings). ``--pretrain`` instead trains the shared plain HRNet with the
``pose.pretrain`` schedule and writes ``<out>/hrnet.pt`` (official HRNet names) and
``<out>/model.json``. Both write the per-epoch TSV for ``dvc plots`` and a small metrics JSON;
``<checkpoints>/last.pt`` lets a killed run continue. With ``procs`` > 1 (``pose.train`` or
``pose.pretrain``) the stage checks its inputs, then reruns itself as that many DDP processes
(hintpose.launch); under those, or under ``torchrun --nproc_per_node=N``, only rank 0 writes.
"""

import argparse
import json
import sys
from pathlib import Path

from hintpose.cli import run
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.errors import ConfigError, DataError
from hintpose.launch import in_process_group, launch_local, threads_per_process


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="an entry of `models` in the params file")
    what.add_argument("--pretrain", action="store_true",
                      help="train the shared HRNet every model starts from (pose.pretrain)")
    ap.add_argument("--init", type=Path, default=None,
                    help="HRNet weights the backbone starts from (the pretrain stage's "
                         "hrnet.pt); default: pose.pretrained")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--checkpoints", type=Path, required=True)
    # torchrun's own parser rejects `--log` (ambiguous with its --log-dir ...): use --log-tsv
    ap.add_argument("--log-tsv", "--log", dest="log", type=Path, required=True,
                    help="per-epoch TSV for dvc plots")
    ap.add_argument("--metrics", type=Path, required=True)
    args = ap.parse_args()
    params = load_params(args.params)
    if args.model is not None and args.model not in params.models:
        known = ", ".join(params.models) or "none"
        raise ConfigError(f"{args.params}: unknown model {args.model!r} under models "
                          f"(known: {known})")
    if args.init is not None and not args.init.is_file():
        raise DataError(f"{args.init}: initial HRNet weights not found (run the pretrain stage)")
    train, val = load_split(args.dataset, "train"), load_split(args.dataset, "val")
    schedule = params.pose.pretrain if args.pretrain else params.pose.train
    trains = not args.pretrain or params.pose.pretrain.epochs > 0
    if trains and schedule.procs > 1 and not in_process_group():
        sys.exit(launch_local(schedule.procs,
                              threads_per_process(schedule.procs, schedule.threads)))

    # Imported only now: a parent that relaunches itself never loads torch.
    from hintpose.training import (
        BACKBONE_WEIGHTS,
        CHECKPOINT,
        MODEL_CONFIG,
        distributed_session,
        pretrain_backbone,
        save_backbone,
        save_pose_model,
        summary_metrics,
        train_pose_model,
        write_log_tsv,
    )
    with distributed_session(params.pose.device) as info:
        if args.pretrain:
            result = pretrain_backbone(train, val, params.pose, args.checkpoints)
        else:
            result = train_pose_model(train, val, params.pose, params.models[args.model],
                                      args.checkpoints, init=args.init, init_key="--init")
        if info.is_main:
            if args.pretrain:
                save_backbone(args.out / BACKBONE_WEIGHTS, result.model)
                (args.out / MODEL_CONFIG).write_text(json.dumps(result.config, indent=2) + "\n")
            else:
                save_pose_model(args.out, result.model, {"name": args.model, **result.config})
            # The checkpoint only serves a killed run; a finished one would make the next run
            # (say, after a code change) "resume" at its last epoch instead of training.
            (args.checkpoints / CHECKPOINT).unlink(missing_ok=True)
            write_log_tsv(args.log, result.log, result.hops)
            metrics = summary_metrics(result.log)
            args.metrics.parent.mkdir(parents=True, exist_ok=True)
            args.metrics.write_text(json.dumps(metrics, indent=2) + "\n")
            print(json.dumps(metrics))


if __name__ == "__main__":
    run(main)
