"""Stage train_posefix: train PoseFix on the train split's GT poses with synthesized errors.

Writes ``<out>/model.pt`` (state dict) and ``<out>/model.json`` (structure and input
settings) and the per-epoch dvclive log ``--log-dir``; ``<checkpoints>/last.pt`` lets a killed
run continue (it is removed once the model is written). ``--init``: the pretrain stage's HRNet,
which the ``posefix.backbone: hrnet`` refiner starts from (unused by ``resnet``).
"""

from pathlib import Path

from hintpose.cli import run, training_parser
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.engine import CHECKPOINT, finish_training
from hintpose.posefix.training import HRNetStart, train_posefix
from hintpose.runtime import from_params


def main() -> None:
    ap = training_parser(__doc__, "posefix")
    ap.add_argument("--init", type=Path, default=None,
                    help="HRNet weights of the pretrain stage (data/pretrain/hrnet.pt)")
    args = ap.parse_args()
    params = load_params(args.params)
    train, val = load_split(args.dataset, "train"), load_split(args.dataset, "val")
    ckpt = args.checkpoints / CHECKPOINT
    pose = params.pose
    hrnet = (HRNetStart(args.init, pose.width, pose.modules, pose.blocks, pose.data.sigma)
             if args.init is not None else None)
    result = train_posefix(train, val, params.posefix, from_params(params.runtime), ckpt,
                           hrnet=hrnet)
    finish_training(args.out, result.model, result.config, result.log, args.log_dir, ckpt)


if __name__ == "__main__":
    run(main)
