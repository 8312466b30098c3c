"""Training speed (img/s) of the configured MMDetection person detector on the train split, in
fp32, fp32 with channels_last and bf16 autocast with channels_last (where the CPU has fast bf16
kernels), through the train_detector stage's own code (training_config, with_runtime,
train_detector): real images, the config's augmentation, losses and AdamW. Each setting trains
one epoch on the first ``--images`` train images (validation off) in a throw-away work folder;
the rate is images over the epoch's wall time. The last line printed is one JSON object.

    PYTHONPATH=. python benchmarks/detector_train_speed.py [--params params.yaml] [--images 240]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import torch

from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.detection.config import load_config, training_config
from hintpose.detection.train import train_detector, with_runtime
from hintpose.runtime import bf16_supported


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--images", type=int, default=240)
    args = ap.parse_args()
    params = load_params(args.params)
    det = params.detector
    det = dataclasses.replace(det, train=dataclasses.replace(det.train, epochs=1,
                                                             val_interval=1000))
    train, val = load_split(args.dataset, "train"), load_split(args.dataset, "val")
    if params.runtime.threads:
        torch.set_num_threads(params.runtime.threads)
    settings = [("fp32", False, False), ("fp32_channels_last", False, True)]
    if bf16_supported(torch.device("cpu")):
        settings.append(("bf16_channels_last", True, True))
    figures: dict[str, object] = {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                  "threads": torch.get_num_threads(), "images": args.images,
                                  "config": det.config}
    # One folder for every run: mmengine keeps one Visualizer per process, which goes on
    # writing under the first run's folder.
    with tempfile.TemporaryDirectory() as work:
        for name, bf16, channels_last in settings:
            cfg = training_config(load_config(det.config), train, val, det, Path(work) / name)
            cfg.train_dataloader.dataset["indices"] = args.images
            cfg.default_hooks.checkpoint = None
            result = train_detector(with_runtime(cfg, bf16, channels_last))
            figures[name] = round(args.images / result.log[0]["seconds"], 2)
            print(f"{name}: {figures[name]} img/s (loss {result.log[0]['loss']:.3f})",
                  flush=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
