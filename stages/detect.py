"""Stage detect: person boxes for every val image, as COCO results, and their box AP.

Writes ``data/detections/val.json`` (persons above ``detector.score_thr``, boxes under
``detector.min_box_size`` on a side dropped) and ``metrics/detection.json``: COCO box AP/AR
against the GT persons, both over every GT person and with persons under the minimum box size
treated as don't-care regions (a detector that drops them by design is not charged for them),
plus detections per image.
"""

import argparse
import json
from pathlib import Path

from hintpose.cli import run
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.detection import coco_box_eval, detect_images, load_detector
from hintpose.errors import DataError
from hintpose.training import resolve_device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--detector", type=Path, default=Path("data/detector"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--out", type=Path, required=True, help="COCO results JSON to write")
    ap.add_argument("--metrics", type=Path, required=True)
    args = ap.parse_args()
    params = load_params(args.params).detector
    split = load_split(args.dataset, args.split)
    device = resolve_device(params.device, key="detector.device")
    model, label = load_detector(args.detector, device)
    images = [(iid, split.image_path(iid)) for iid in sorted(split.images)]
    dets = detect_images(model, images, label, params.batch_size, params.score_thr,
                         params.min_box_size, split.category["id"])
    if not dets:
        raise DataError(f"the detector found no person in any of the {len(images)} "
                        f"{args.split} images (detector.score_thr={params.score_thr}, "
                        f"detector.min_box_size={params.min_box_size}); nothing downstream "
                        "can run")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".partial")
    tmp.write_text(json.dumps(dets))
    tmp.replace(args.out)
    metrics = {
        "images": len(images),
        "detections_per_image": round(len(dets) / len(images), 3),
        "all_persons": coco_box_eval(split.data, dets),
        f"persons_min{params.min_box_size:g}px": coco_box_eval(split.data, dets,
                                                             params.min_box_size),
    }
    args.metrics.parent.mkdir(parents=True, exist_ok=True)
    args.metrics.write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps({k: metrics[k] for k in ("images", "detections_per_image")}))
    print(f"person box AP {metrics['all_persons']['AP']:.3f} (every GT person), "
          f"{metrics[f'persons_min{params.min_box_size:g}px']['AP']:.3f} "
          f"(GT persons under {params.min_box_size:g} px ignored)")


if __name__ == "__main__":
    run(main)
