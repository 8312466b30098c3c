"""Stage train_detector: train the person detector, or validate and record a given checkpoint.

With ``detector.checkpoint`` empty, the config in ``detector.config`` is trained from scratch on
the train split through mmengine's Runner (person class only). With a checkpoint, the config's
model is built, the weights are loaded into it strictly and the pair is recorded (path and
SHA-256; the file is not copied). Either way ``<out>`` is a detector folder for ``detect``.
"""

import argparse
import json
import tempfile
from pathlib import Path

from hintpose.cli import run
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.detection import (
    build_model,
    class_names,
    load_config,
    person_label,
    read_checkpoint,
    save_detector,
    sha256,
    train_detector,
    training_config,
    write_detector_log,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--out", type=Path, required=True, help="detector folder to write")
    ap.add_argument("--log-tsv", type=Path, required=True, help="per-epoch TSV for dvc plots")
    ap.add_argument("--metrics", type=Path, required=True)
    args = ap.parse_args()
    params = load_params(args.params).detector
    cfg = load_config(params.config)
    if params.checkpoint:
        weights = Path(params.checkpoint).resolve()
        state, meta = read_checkpoint(weights)
        classes = class_names(cfg, meta)
        label = person_label(classes, params.config)
        build_model(cfg, state, str(weights))
        record = {"weights": "checkpoint", "checkpoint": str(weights),
                  "checkpoint_sha256": sha256(weights), "config": params.config,
                  "classes": classes, "person_label": label}
        save_detector(args.out, cfg, record)
        log: list[dict[str, float]] = []
        summary = {"weights": "checkpoint", "classes": len(classes), "person_label": label}
    else:
        train, val = load_split(args.dataset, "train"), load_split(args.dataset, "val")
        with tempfile.TemporaryDirectory(prefix="hintpose-det-") as work:
            result = train_detector(training_config(cfg, train, val, params, Path(work)),
                                    params.train.threads)
        record = {"weights": "trained", "config": params.config, "classes": ["person"],
                  "person_label": 0, "train_seconds": round(result.seconds, 1)}
        save_detector(args.out, result.config, record, result.model)
        log = result.log
        last = log[-1]
        summary = {"weights": "trained", "epochs": len(log), "final_loss": last["loss"],
                   "val_AP": next((r["val_AP"] for r in reversed(log)
                                   if r["val_AP"] == r["val_AP"]), None)}
        print(f"trained the detector in {result.seconds:.0f} s")
    write_detector_log(args.log_tsv, log)
    args.metrics.parent.mkdir(parents=True, exist_ok=True)
    args.metrics.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    run(main)
