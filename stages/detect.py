"""Stage detect: person boxes for every val image, as COCO results, and their box AP.

Writes ``data/detections/val.json``: the persons scoring at least ``detector.score_thr`` with
both box sides at least ``detector.min_box_size`` (the pipeline's one box filter), and two
JSON files: ``--metrics`` (the headline: box AP and AR against every GT person) and
``--details`` (every COCO box stat, also with persons under the minimum box size treated as
don't-care regions, since a detector that drops them by design is not charged for them, and
detections per image).
"""

import argparse
import json
from pathlib import Path

from hintpose.cli import run
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.detection.config import load_detector
from hintpose.detection.detect import coco_box_eval, detect_images
from hintpose.errors import DataError
from hintpose.io import write_json
from hintpose.runtime import resolve_device, set_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--detector", type=Path, default=Path("data/detector"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--out", type=Path, required=True, help="COCO results JSON to write")
    ap.add_argument("--metrics", type=Path, required=True, help="headline box AP / AR")
    ap.add_argument("--details", type=Path, required=True, help="every box stat")
    args = ap.parse_args()
    all_params = load_params(args.params)
    params = all_params.detector
    split = load_split(args.dataset, args.split)
    set_threads(all_params.runtime.threads)
    model, label = load_detector(args.detector, resolve_device(all_params.runtime.device))
    images = [(iid, split.image_path(iid)) for iid in sorted(split.images)]
    dets = detect_images(model, images, label, params.batch_size, params.score_thr,
                         params.min_box_size, split.category["id"])
    if not dets:
        raise DataError(f"the detector found no person in any of the {len(images)} "
                        f"{args.split} images (detector.score_thr={params.score_thr}, "
                        f"detector.min_box_size={params.min_box_size}); nothing downstream "
                        "can run")
    every = coco_box_eval(split.data, dets)
    details = {
        "images": len(images),
        "detections_per_image": round(len(dets) / len(images), 3),
        "all_persons": every,
        f"persons_min{params.min_box_size:g}px": coco_box_eval(split.data, dets,
                                                             params.min_box_size),
    }
    write_json(args.out, dets, indent=None)
    write_json(args.details, details)
    write_json(args.metrics, {"box_AP": round(every["AP"], 4), "box_AR": round(every["AR"], 4)})
    print(json.dumps({k: details[k] for k in ("images", "detections_per_image")}))
    print(f"person box AP {every['AP']:.3f} (every GT person), "
          f"{details[f'persons_min{params.min_box_size:g}px']['AP']:.3f} "
          f"(GT persons under {params.min_box_size:g} px ignored)")


if __name__ == "__main__":
    run(main)
