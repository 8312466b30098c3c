"""Stage box_errors: how the detector's val boxes err against GT, next to the training crops.

Matches each box of ``--detections`` (the detect stage's) to the val GT person of highest IoU
(hintpose.detection.box_errors) and writes ``--out`` (JSON): the detector's centre offsets
and side ratios (std, percentiles), the share of its boxes holding another labeled person,
and the same statistics of the training crops each schedule draws (``pose.pretrain`` and
``pose.train``: ``center_jitter``, ``pose.data.scale_factor``), plus ``--plot``: the
detector's errors and the fine-tunes' crops side by side. A report, not a design input: the
defaults were measured on a dev split (benchmarks/box_errors.py).
"""

import argparse
from pathlib import Path

from hintpose.cli import run
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.detection.box_errors import (
    crop_errors,
    detection_errors,
    error_summary,
    plot_box_errors,
)
from hintpose.io import write_atomic, write_json
from hintpose.topdown.boxes import read_boxes

#: Training crops drawn per schedule for the statistics and the figure.
CROP_SAMPLES = 20000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--detections", type=Path, required=True, help="the detect stage's boxes")
    ap.add_argument("--out", type=Path, required=True, help="JSON of the statistics")
    ap.add_argument("--plot", type=Path, required=True, help="PNG of the two side by side")
    args = ap.parse_args()
    pose = load_params(args.params).pose
    coco = load_split(args.dataset, "val")
    summary, matched = detection_errors(coco, read_boxes(args.detections, coco))
    schedules = {"pretrain": pose.pretrain.center_jitter, "train": pose.train.center_jitter}
    crops = {name: crop_errors(jitter, pose.data.scale_factor, CROP_SAMPLES)
             for name, jitter in schedules.items()}
    write_json(args.out, {
        "detections": str(args.detections), "detector": summary,
        "crops": {name: {"center_jitter": list(schedules[name]),
                         "scale_factor": pose.data.scale_factor, "samples": CROP_SAMPLES,
                         **error_summary(rows)} for name, rows in crops.items()}})
    write_atomic(args.plot, lambda p: plot_box_errors(matched, {"fine-tune": crops["train"]}, p))
    print(f"detector: {summary['matched']} of {summary['boxes']} boxes matched (IoU >= "
          f"{summary['match_iou']}); centre std {summary.get('dx_std')} / "
          f"{summary.get('dy_std')} box widths / heights; fine-tune crops "
          f"{list(schedules['train'])}")


if __name__ == "__main__":
    run(main)
