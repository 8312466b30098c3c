"""Stage pretrain: the shared plain HRNet every pose model starts from (``pose.pretrain``).

Writes ``<out>/hrnet.pt`` (official HRNet names) and ``<out>/model.json``; with
``pose.pretrain.cue_epochs`` > 0 also the cue branch ``<out>/cue.pt``, the start of every cue
model (hintpose.topdown.pretraining). The per-epoch dvclive logs go to ``--log-dir`` and
``--cue-log-dir``; ``<checkpoints>/`` lets a killed run continue. With ``runtime.procs`` > 1 the
stage checks its inputs, then reruns itself as that many DDP processes (hintpose.launch); under
those, or under ``torchrun --nproc_per_node=N``, only rank 0 writes.
"""

import sys
from pathlib import Path

from hintpose.cli import run, training_parser
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.launch import in_process_group, launch_local, threads_per_process


def main() -> None:
    ap = training_parser(__doc__, "pretrain")
    ap.add_argument("--cue-log-dir", type=Path, default=None,
                    help="dvclive folder of the cue branch (default: <log-dir>_cue)")
    args = ap.parse_args()
    if args.cue_log_dir is None:
        args.cue_log_dir = args.log_dir.with_name(args.log_dir.name + "_cue")
    params = load_params(args.params)
    train, val = load_split(args.dataset, "train"), load_split(args.dataset, "val")
    rp = params.runtime
    if params.pose.pretrain.epochs > 0 and rp.procs > 1 and not in_process_group():
        sys.exit(launch_local(rp.procs, threads_per_process(rp.procs, rp.threads)))

    # Imported only now: a parent that relaunches itself never loads torch.
    from hintpose.engine import CHECKPOINT
    from hintpose.runtime import distributed_session, from_params
    from hintpose.topdown.pretraining import pretrain_backbone, write_pretrained
    from hintpose.topdown.training import PoseData

    with distributed_session(rp.device) as info:
        rt = from_params(rp, info.local_rank, announce=info.is_main)
        data = PoseData(train, val, params.pose.data)
        result, branch = pretrain_backbone(data, params.pose, rt, args.checkpoints / CHECKPOINT,
                                           info=info)
        if info.is_main:
            write_pretrained(args.out, args.checkpoints, result, branch, args.log_dir,
                             args.cue_log_dir)


if __name__ == "__main__":
    run(main)
