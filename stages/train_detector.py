"""Stage train_detector: train the person detector, or validate and record a given checkpoint.

With ``detector.checkpoint`` empty, the config in ``detector.config`` is trained from scratch on
the train split through mmengine's Runner (person class only). With a checkpoint, the config's
model is built, the weights are loaded into it strictly and the pair is recorded (path and
SHA-256; the file is not copied). Training resumes after the last epoch of a killed run from
MMEngine's checkpoint in ``--checkpoints`` (removed once the detector is saved). Either way
``<out>`` is a detector folder for ``detect``, and ``--log-dir`` the per-epoch dvclive log
(empty for given weights). Training runs under bf16 autocast where ``runtime.bf16`` pays (a
CPU with fast bf16 kernels) and in channels_last memory with ``runtime.channels_last``.
"""

import argparse
import shutil
from pathlib import Path

from hintpose.cli import run
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.detection.config import (
    build_model,
    class_names,
    load_config,
    person_label,
    read_checkpoint,
    save_detector,
    training_config,
)
from hintpose.detection.train import train_detector, with_runtime
from hintpose.io import file_digest, finish_dir, start_dir
from hintpose.trainlog import write_log


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--out", type=Path, required=True, help="detector folder to write")
    ap.add_argument("--checkpoints", type=Path, default=Path("data/checkpoints/detector"),
                    help="MMEngine's work folder: the last epoch's checkpoint, for resuming")
    ap.add_argument("--log-dir", type=Path, required=True, help="dvclive folder of the run")
    args = ap.parse_args()
    all_params = load_params(args.params)
    params = all_params.detector
    cfg = load_config(params.config)
    if params.checkpoint:
        weights = Path(params.checkpoint).resolve()
        state, meta = read_checkpoint(weights)
        classes = class_names(cfg, meta)
        label = person_label(classes, params.config)
        build_model(cfg, state, str(weights))
        record = {"weights": "checkpoint", "checkpoint": str(weights),
                  "checkpoint_sha256": file_digest(weights), "config": params.config,
                  "classes": classes, "person_label": label}
        save_detector(start_dir(args.out), cfg, record)
        log: list[dict[str, float]] = []
    else:
        from hintpose.runtime import Runtime, resolve_device

        rp = all_params.runtime
        rt = Runtime.create(resolve_device(rp.device), rp.bf16, rp.channels_last)
        train, val = load_split(args.dataset, "train"), load_split(args.dataset, "val")
        cfg = with_runtime(training_config(cfg, train, val, params, args.checkpoints), rt.bf16,
                           rt.channels_last)
        result = train_detector(cfg, rp.threads)
        record = {"weights": "trained", "config": params.config, "classes": ["person"],
                  "person_label": 0, "train_seconds": round(result.seconds, 1)}
        save_detector(start_dir(args.out), result.config, record, result.model)
        log = result.log
        print(f"trained the detector in {result.seconds:.0f} s"
              + (" (resumed)" if result.resumed else ""))
    write_log(args.log_dir, log)
    finish_dir(args.out)  # the detector folder, built aside, replaces the earlier one
    # A finished run's work folder would make the next run (say, after a code change) resume
    # at its last epoch instead of training.
    shutil.rmtree(args.checkpoints, ignore_errors=True)


if __name__ == "__main__":
    run(main)
