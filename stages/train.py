"""Stage train@<model>: fine-tune one top-down pose model (HRNet recipe); resumable, DDP.

``--model NAME`` trains the entry NAME of ``models``; its backbone starts from ``--init`` (the
pretrain stage's HRNet, default ``pose.pretrained``), or, when ``pose.pretrain.cue_epochs`` >
0 and ``pose.pretrain.branches`` has a branch of its kind, from that branch's weights in
``--branches`` (the pretrain stage's folder; hintpose.topdown.params.branch_for). It writes
``<out>/model.pt`` (state dict), ``<out>/model.json`` (hintpose.topdown.spec.ModelSpec) and
the per-epoch dvclive log ``--log-dir``; ``<checkpoints>/last.pt`` lets a killed run continue.
With ``runtime.procs`` > 1 the stage checks its inputs, then reruns itself as that many DDP
processes (hintpose.launch); under those, or under ``torchrun --nproc_per_node=N``, only rank
0 writes.
"""

import sys
from pathlib import Path

from hintpose.cli import run, training_parser
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.errors import ConfigError, DataError
from hintpose.launch import in_process_group, launch_local, threads_per_process
from hintpose.topdown.params import BRANCH_WEIGHTS, branch_for


def main() -> None:
    ap = training_parser(__doc__, "models/<name>")
    ap.add_argument("--model", required=True, help="an entry of `models` in the params file")
    ap.add_argument("--init", type=Path, default=None,
                    help="HRNet weights the backbone starts from (the pretrain stage's "
                         "hrnet.pt); default: pose.pretrained")
    ap.add_argument("--branches", type=Path, default=None,
                    help="the pretrain stage's folder of branch weights (cue.pt, "
                         "recurrent.pt, cue_recurrent.pt)")
    args = ap.parse_args()
    params = load_params(args.params)
    if args.model not in params.models:
        known = ", ".join(params.models) or "none"
        raise ConfigError(f"{args.params}: unknown model {args.model!r} under models "
                          f"(known: {known})")
    model = params.models[args.model]
    init = args.init or (Path(params.pose.pretrained) if params.pose.pretrained else None)
    if init is not None and not init.is_file():
        key = "--init" if args.init else "pose.pretrained"
        raise DataError(f"{init}: initial HRNet weights not found ({key}; run the pretrain "
                        "stage)")
    branch_init = None
    pre = params.pose.pretrain
    kind = branch_for(model.cue, model.recurrent, pre.branches) if pre.cue_epochs else None
    if kind is not None and args.branches is not None:
        branch_init = args.branches / BRANCH_WEIGHTS[kind]
        if not branch_init.is_file():
            raise DataError(f"{branch_init}: {kind}-branch weights not found (run the pretrain "
                            f"stage; pose.pretrain.branches holds {kind!r})")
    train, val = load_split(args.dataset, "train"), load_split(args.dataset, "val")
    rp = params.runtime
    if rp.procs > 1 and not in_process_group():
        sys.exit(launch_local(rp.procs, threads_per_process(rp.procs, rp.threads)))

    # Imported only now: a parent that relaunches itself never loads torch.
    from hintpose.engine import CHECKPOINT, finish_training
    from hintpose.runtime import distributed_session, from_params
    from hintpose.topdown.spec import ModelSpec
    from hintpose.topdown.training import PoseData, start_model, train_pose_model

    with distributed_session(rp.device) as info:
        rt = from_params(rp, info.local_rank, announce=info.is_main)
        spec = ModelSpec.from_params(params.pose, model, train.category["keypoints"], args.model)
        ckpt = args.checkpoints / CHECKPOINT
        result = train_pose_model(start_model(spec, init, branch_init),
                                  PoseData(train, val, params.pose.data), params.pose.train, rt,
                                  ckpt, info=info)
        if info.is_main:
            finish_training(args.out, result.model, result.config, result.log, args.log_dir,
                            ckpt)


if __name__ == "__main__":
    run(main)
