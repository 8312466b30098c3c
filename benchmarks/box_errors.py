"""How a trained detector's person boxes differ from the GT boxes the pose models train on.

Runs the detector folder on a split (use a dev split: the generator with another seed, e.g.
``dataset.seed: 7``, never the val split) and matches each detection (the detect stage's
score and size filters) to the GT person of highest IoU (hintpose.detection.box_errors, as the
box_errors stage does for the val split). Prints, over matches with IoU >= 0.5: the centre
offset in GT-box widths / heights and log2 of the side ratios (10th, 50th, 90th percentiles and
std), the share of boxes holding another labeled person (>= 4 of its joints inside), and the
same share for the GT boxes themselves. The last line is one JSON object.

    PYTHONPATH=. python benchmarks/box_errors.py --dataset DEV_DATASET [--detector data/detector]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.detection.box_errors import detection_errors
from hintpose.detection.config import load_detector
from hintpose.detection.detect import detect_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, required=True, help="a prepared dataset (dev)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--detector", type=Path, default=Path("data/detector"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args()
    params = load_params(args.params)
    coco = load_split(args.dataset, args.split)
    net, label = load_detector(args.detector, torch.device("cpu"))
    images = [(iid, coco.image_path(iid)) for iid in sorted(coco.images)]
    boxes = detect_images(net, images, label, 8, params.detector.score_thr,
                          params.detector.min_box_size)
    scored = [b for b in boxes if b["score"] >= 0.4]
    out = {"detections": detection_errors(coco, boxes)[0],
           "detections_score_0.4": detection_errors(coco, scored)[0]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
