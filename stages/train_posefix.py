"""Stage train_posefix: train PoseFix on the train split's GT poses with synthesized errors.

Writes ``<out>/model.pt`` (state dict) and ``<out>/model.json`` (structure and input settings),
the per-epoch TSV for ``dvc plots`` and a small metrics JSON; ``<checkpoints>/last.pt`` lets a
killed run continue (it is removed once the model is written).
"""

import argparse
import json
import math
import os
from pathlib import Path

from hintpose.cli import run
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.posefix import CHECKPOINT, save_model, train_posefix, write_log_tsv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--out", type=Path, default=Path("data/posefix"))
    ap.add_argument("--checkpoints", type=Path, default=Path("data/checkpoints/posefix"))
    ap.add_argument("--log-tsv", type=Path, default=Path("metrics/posefix/train.tsv"))
    ap.add_argument("--metrics", type=Path, default=Path("metrics/posefix/train.json"))
    args = ap.parse_args()
    params = load_params(args.params)
    train, val = load_split(args.dataset, "train"), load_split(args.dataset, "val")
    result = train_posefix(train, val, params.posefix, args.checkpoints)
    save_model(args.out, result.model, result.config)
    # A finished run's checkpoint would make the next run "resume" at its last epoch.
    (args.checkpoints / CHECKPOINT).unlink(missing_ok=True)
    write_log_tsv(args.log_tsv, result.log)
    last = result.log[-1]
    metrics = {"epochs": int(last["epoch"]), "train_loss": last["train_loss"],
               "val_loss": last["val_loss"], "val_l1": last["val_l1"],
               "train_seconds": round(sum(r["seconds"] for r in result.log), 2),
               "resumed_epochs": result.resumed_epochs}
    # no val persons: null, not NaN (which JSON readers and `dvc metrics` reject)
    metrics = {k: None if isinstance(v, float) and math.isnan(v) else v
               for k, v in metrics.items()}
    args.metrics.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.metrics.with_name(f".{args.metrics.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    os.replace(tmp, args.metrics)
    print(json.dumps(metrics))


if __name__ == "__main__":
    run(main)
