"""Stage train_multiposenet: train MultiPoseNet's keypoint subnet on whole train images.

Writes ``<out>/model.pt`` (state dict) and ``<out>/model.json`` (structure and input
settings) and the per-epoch dvclive log ``--log-dir``; ``<checkpoints>/last.pt`` lets a killed
run continue (it is removed once the model is written).
"""

from hintpose.bottomup.training import train_multiposenet
from hintpose.cli import run, training_parser
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.engine import CHECKPOINT, finish_training
from hintpose.runtime import from_params


def main() -> None:
    args = training_parser(__doc__, "multiposenet").parse_args()
    params = load_params(args.params)
    train, val = load_split(args.dataset, "train"), load_split(args.dataset, "val")
    ckpt = args.checkpoints / CHECKPOINT
    result = train_multiposenet(train, val, params.multiposenet, from_params(params.runtime), ckpt)
    finish_training(args.out, result.model, result.config, result.log, args.log_dir, ckpt)


if __name__ == "__main__":
    run(main)
