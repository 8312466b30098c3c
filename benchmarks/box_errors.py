"""How a trained detector's person boxes differ from the GT boxes the pose models train on.

Runs the detector folder on a split (use a dev split: the generator with another seed, e.g.
``dataset.seed: 7``, never the val split) and matches each detection (the detect stage's
score and size filters) to the GT person of highest IoU. Prints, over matches with IoU >= 0.5:
the centre offset in GT-box widths / heights and log2 of the side ratios (10th, 50th, 90th
percentiles and std), the share of boxes holding another labeled person (>= 4 of its joints
inside), and the same share for the GT boxes themselves. The last line is one JSON object.

    PYTHONPATH=. python benchmarks/box_errors.py --dataset DEV_DATASET [--detector data/detector]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.data.crowd import box_iou, points_in_box
from hintpose.detection.config import load_detector
from hintpose.detection.detect import detect_images

#: Another person "is inside" a box when at least this many of its labeled joints are.
MIN_JOINTS = 4


def others_inside(box: Sequence[float], persons: list[dict[str, Any]], skip: int) -> int:
    """Persons (but ``persons[skip]``) with at least MIN_JOINTS labeled joints in ``box``."""
    count = 0
    for j, p in enumerate(persons):
        kp = np.asarray(p["keypoints"], np.float64).reshape(-1, 3)
        if j != skip and points_in_box(kp[kp[:, 2] > 0], box).sum() >= MIN_JOINTS:
            count += 1
    return count


def match(box: Sequence[float], persons: list[dict[str, Any]]) -> dict[str, float]:
    """The detection against its best-IoU GT person (IoU 0 when the image has none)."""
    if not persons:
        return {"iou": 0.0}
    gts = np.array([p["clean_bbox"] for p in persons], dtype=np.float64)
    iou = box_iou(box, gts)
    k = int(iou.argmax())
    gx, gy, gw, gh = gts[k]
    x, y, w, h = box
    return {"iou": float(iou[k]), "dx": (x + w / 2 - gx - gw / 2) / gw,
            "dy": (y + h / 2 - gy - gh / 2) / gh, "log2w": float(np.log2(w / gw)),
            "log2h": float(np.log2(h / gh)), "others": others_inside(box, persons, k)}


def summary(rows: list[dict[str, float]]) -> dict[str, Any]:
    good = [r for r in rows if r["iou"] >= 0.5]
    out: dict[str, Any] = {"boxes": len(rows), "iou_at_least_0.5": len(good),
                           "iou_median": round(float(np.median([r["iou"] for r in rows])), 3)}
    for key in ("dx", "dy", "log2w", "log2h"):
        v = np.array([r[key] for r in good])
        out[f"{key}_p10_p50_p90"] = [round(float(t), 3) for t in np.percentile(v, [10, 50, 90])]
        out[f"{key}_std"] = round(float(v.std()), 3)
    out["share_with_another_person_inside"] = round(
        float(np.mean([r["others"] > 0 for r in good])), 3)
    return out


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
    persons: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for ann in coco.training_persons():
        persons[ann["image_id"]].append(ann)
    rows = [{**match(b["bbox"], persons[b["image_id"]]), "score": b["score"]} for b in boxes]
    gt_share = np.mean([others_inside(p["clean_bbox"], ps, i) > 0
                        for ps in persons.values() for i, p in enumerate(ps)])
    out = {"detections": summary(rows),
           "detections_score_0.4": summary([r for r in rows if r["score"] >= 0.4]),
           "gt_persons": sum(len(v) for v in persons.values()),
           "gt_boxes_share_with_another_person_inside": round(float(gt_share), 3)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
