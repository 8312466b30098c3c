"""Stage train_multiposenet: train MultiPoseNet's keypoint subnet on whole train images.

Writes ``<out>/model.pt`` (state dict) and ``<out>/model.json`` (structure and input
settings), the per-epoch TSV for ``dvc plots`` and a small metrics JSON; ``<checkpoints>/last.pt``
lets a killed run continue (it is removed once the model is written).
"""

import argparse
import json
from pathlib import Path

from hintpose.bottomup import (
    CHECKPOINT,
    save_model,
    summary_metrics,
    train_multiposenet,
    write_json,
    write_log_tsv,
)
from hintpose.cli import run
from hintpose.config import load_params
from hintpose.data.coco import load_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--out", type=Path, default=Path("data/multiposenet"))
    ap.add_argument("--checkpoints", type=Path, default=Path("data/checkpoints/multiposenet"))
    ap.add_argument("--log-tsv", type=Path, required=True, help="per-epoch TSV for dvc plots")
    ap.add_argument("--metrics", type=Path, required=True)
    args = ap.parse_args()
    params = load_params(args.params).multiposenet
    train, val = load_split(args.dataset, "train"), load_split(args.dataset, "val")
    result = train_multiposenet(train, val, params, args.checkpoints)
    save_model(args.out, result.model, result.config)
    # A finished run's checkpoint would make the next run (say, after a code change) resume
    # at its last epoch instead of training.
    (args.checkpoints / CHECKPOINT).unlink(missing_ok=True)
    write_log_tsv(args.log_tsv, result.log)
    metrics = summary_metrics(result.log)
    write_json(args.metrics, metrics)
    print(json.dumps(metrics))


if __name__ == "__main__":
    run(main)
