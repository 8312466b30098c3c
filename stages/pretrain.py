"""Stage pretrain: the shared plain HRNet every pose model starts from (``pose.pretrain``).

Writes ``<out>/hrnet.pt`` (official HRNet names) and ``<out>/model.json``; with
``pose.pretrain.cue_epochs`` > 0 also the branches of ``pose.pretrain.branches``
(``<out>/cue.pt``, ``recurrent.pt``, ``cue_recurrent.pt``), each the start of the models of its
kind (hintpose.topdown.pretraining). The per-epoch dvclive logs go to ``--log-dir`` and, per
branch, ``<log-dir>_<branch>`` (empty for a branch not trained); ``<checkpoints>/`` lets a
killed run continue. With ``runtime.procs`` > 1 the
stage checks its inputs, then reruns itself as that many DDP processes (hintpose.launch); under
those, or under ``torchrun --nproc_per_node=N``, only rank 0 writes.
"""

import sys

from hintpose.cli import run, training_parser
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.launch import in_process_group, launch_local, threads_per_process


def main() -> None:
    ap = training_parser(__doc__, "pretrain")
    args = ap.parse_args()
    params = load_params(args.params)
    train, val = load_split(args.dataset, "train"), load_split(args.dataset, "val")
    rp = params.runtime
    if params.pose.pretrain.epochs > 0 and rp.procs > 1 and not in_process_group():
        sys.exit(launch_local(rp.procs, threads_per_process(rp.procs, rp.threads)))

    # Imported only now: a parent that relaunches itself never loads torch.
    from hintpose.engine import CHECKPOINT
    from hintpose.runtime import distributed_session, from_params
    from hintpose.topdown.params import BRANCHES
    from hintpose.topdown.pretraining import pretrain_backbone, write_pretrained
    from hintpose.topdown.training import PoseData

    with distributed_session(rp.device) as info:
        rt = from_params(rp, info.local_rank, announce=info.is_main)
        data = PoseData(train, val, params.pose.data)
        result, branches = pretrain_backbone(data, params.pose, rt,
                                             args.checkpoints / CHECKPOINT, info=info)
        if info.is_main:
            logs = {name: args.log_dir.with_name(f"{args.log_dir.name}_{name}")
                    for name in BRANCHES}
            write_pretrained(args.out, args.checkpoints, result, branches, args.log_dir, logs)


if __name__ == "__main__":
    run(main)
