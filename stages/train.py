"""Stage train@<model>: fine-tune one top-down pose model (HRNet recipe); resumable, DDP.

``--model NAME`` trains the entry NAME of ``models``; its backbone starts from ``--init`` (the
pretrain stage's HRNet, default ``pose.pretrained``) and a cue model from ``--cue-init`` (the
pretrain stage's cue branch) when ``pose.pretrain.cue_epochs`` > 0. It writes ``<out>/model.pt``
(state dict), ``<out>/model.json`` (hintpose.topdown.spec.ModelSpec) and the per-epoch dvclive
log ``--log-dir``; ``<checkpoints>/last.pt`` lets a killed run continue. With ``runtime.procs``
> 1 the stage checks its inputs, then reruns itself as that many DDP processes
(hintpose.launch); under those, or under ``torchrun --nproc_per_node=N``, only rank 0 writes.
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
    ap.add_argument("--model", required=True, help="an entry of `models` in the params file")
    ap.add_argument("--init", type=Path, default=None,
                    help="HRNet weights the backbone starts from (the pretrain stage's "
                         "hrnet.pt); default: pose.pretrained")
    ap.add_argument("--cue-init", type=Path, default=None,
                    help="the pretrain stage's cue branch (cue.pt): cue models start from it "
                         "when pose.pretrain.cue_epochs > 0")
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
    cue_init = None
    if model.cue != "none" and params.pose.pretrain.cue_epochs > 0 and args.cue_init:
        cue_init = args.cue_init
        if not cue_init.is_file():
            raise DataError(f"{cue_init}: cue-branch weights not found (run the pretrain "
                            "stage; pose.pretrain.cue_epochs > 0 writes them)")
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
        result = train_pose_model(start_model(spec, init, cue_init),
                                  PoseData(train, val, params.pose.data), params.pose.train, rt,
                                  ckpt, info=info)
        if info.is_main:
            finish_training(args.out, result.model, result.config, result.log, args.log_dir,
                            ckpt)


if __name__ == "__main__":
    run(main)
