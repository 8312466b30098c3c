"""Stage train@<model>: train one top-down pose model (HRNet recipe); resumable, DDP under torchrun.

``--model NAME`` trains the entry NAME of ``models``, its backbone starting from ``--init``
(the pretrain stage's HRNet); it writes ``<out>/model.pt`` (state dict) and ``<out>/model.json``
(structure and input settings). ``--pretrain`` instead trains the shared plain HRNet with the
``pose.pretrain`` schedule and writes ``<out>/hrnet.pt`` (official HRNet names) and
``<out>/model.json``. Both write the per-epoch dvclive log ``--log``; ``<checkpoints>/last.pt``
lets a killed run continue. With ``runtime.procs`` > 1 the stage checks its inputs, then reruns
itself as that many DDP processes (hintpose.launch); under those, or under
``torchrun --nproc_per_node=N``, only rank 0 writes.
"""

import sys
from pathlib import Path

from hintpose.cli import run, training_parser
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.errors import ConfigError, DataError
from hintpose.launch import in_process_group, launch_local, threads_per_process


def main() -> None:
    ap = training_parser(__doc__, "models/<name>")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="an entry of `models` in the params file")
    what.add_argument("--pretrain", action="store_true",
                      help="train the shared HRNet every model starts from (pose.pretrain)")
    ap.add_argument("--init", type=Path, default=None,
                    help="HRNet weights the backbone starts from (the pretrain stage's "
                         "hrnet.pt); default: pose.pretrained")
    ap.add_argument("--cue-init", type=Path, default=None,
                    help="the pretrain stage's cue branch (cue.pt): cue models start from it "
                         "when pose.pretrain.cue_epochs > 0")
    ap.add_argument("--cue-log-dir", type=Path, default=None,
                    help="with --pretrain: dvclive folder of the cue branch (default: "
                         "<log-dir>_cue)")
    args = ap.parse_args()
    if args.cue_log_dir is None:
        args.cue_log_dir = args.log_dir.with_name(args.log_dir.name + "_cue")
    params = load_params(args.params)
    if args.model is not None and args.model not in params.models:
        known = ", ".join(params.models) or "none"
        raise ConfigError(f"{args.params}: unknown model {args.model!r} under models "
                          f"(known: {known})")
    if args.init is not None and not args.init.is_file():
        raise DataError(f"{args.init}: initial HRNet weights not found (run the pretrain stage)")
    cue_init = None
    if (args.model is not None and params.models[args.model].instance_cue
            and params.pose.pretrain.cue_epochs > 0 and args.cue_init is not None):
        cue_init = args.cue_init
        if not cue_init.is_file():
            raise DataError(f"{cue_init}: cue-branch weights not found (run the pretrain "
                            "stage; pose.pretrain.cue_epochs > 0 writes them)")
    train, val = load_split(args.dataset, "train"), load_split(args.dataset, "val")
    rp = params.runtime
    trains = not args.pretrain or params.pose.pretrain.epochs > 0
    if trains and rp.procs > 1 and not in_process_group():
        sys.exit(launch_local(rp.procs, threads_per_process(rp.procs, rp.threads)))

    # Imported only now: a parent that relaunches itself never loads torch.
    from hintpose.engine import CHECKPOINT, finish_training
    from hintpose.io import finish_dir, save_torch, start_dir, write_json
    from hintpose.models.folder import MODEL_CONFIG, plain_state
    from hintpose.runtime import distributed_session, from_params
    from hintpose.topdown.pretraining import pretrain_backbone
    from hintpose.topdown.training import train_pose_model
    from hintpose.topdown.weights import BACKBONE_WEIGHTS, CUE_WEIGHTS, save_backbone
    from hintpose.trainlog import write_log

    with distributed_session(rp.device) as info:
        rt = from_params(rp, info.local_rank, announce=info.is_main)
        ckpt = args.checkpoints / CHECKPOINT
        branch = None
        if args.pretrain:
            result, branch = pretrain_backbone(train, val, params.pose, rt, ckpt, info=info)
        else:
            result = train_pose_model(train, val, params.pose, params.models[args.model], rt,
                                      ckpt, info=info, init=args.init, init_key="--init",
                                      cue_init=cue_init)
        if info.is_main and args.pretrain:
            tmp = start_dir(args.out)
            save_backbone(tmp / BACKBONE_WEIGHTS, result.model)
            write_json(tmp / MODEL_CONFIG, result.config)
            write_log(args.log_dir, result.log)
            if branch is not None:
                save_torch(plain_state(branch.model), tmp / CUE_WEIGHTS)
                write_log(args.cue_log_dir, branch.log)
            finish_dir(args.out)
            for name in (CHECKPOINT, "pretrained.pt", "plain_last.pt", "cue_last.pt"):
                (args.checkpoints / name).unlink(missing_ok=True)
        elif info.is_main:
            finish_training(args.out, result.model, {"name": args.model, **result.config},
                            result.log, args.log_dir, ckpt)


if __name__ == "__main__":
    run(main)
