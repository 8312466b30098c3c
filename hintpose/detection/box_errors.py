"""How the detector's person boxes differ from the GT boxes, and the training crops drawn to
match them (``pose.train.center_jitter``, ``pose.data.scale_factor``).

Each detection is matched to the GT person of highest IoU; over matches with IoU >= MATCH_IOU
the errors are the centre offset in GT-box widths / heights and log2 of the side ratios. A
training crop's errors are drawn as hintpose.topdown.samples draws them: its centre offset
(``center_offset``) and its size factor (``scale_draw``, the same on both sides).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hintpose.data.coco import CocoPersons
from hintpose.data.crowd import box_iou, points_in_box
from hintpose.topdown.samples import center_offset, scale_draw

#: Another person "is inside" a box when at least this many of its labeled joints are.
MIN_JOINTS = 4
#: Detections matched at least this well to a GT person give the error statistics.
MATCH_IOU = 0.5
#: The error statistics of a box (centre offsets, log2 side ratios).
ERRORS = ("dx", "dy", "log2w", "log2h")


def others_inside(box: Sequence[float], persons: Sequence[Mapping[str, Any]], skip: int) -> int:
    """Persons (but ``persons[skip]``) with at least MIN_JOINTS labeled joints in ``box``."""
    count = 0
    for j, p in enumerate(persons):
        kp = np.asarray(p["keypoints"], np.float64).reshape(-1, 3)
        if j != skip and points_in_box(kp[kp[:, 2] > 0], box).sum() >= MIN_JOINTS:
            count += 1
    return count


def match(box: Sequence[float], persons: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """A detection against its best-IoU GT person (IoU 0 when the image has none): the IoU,
    the errors of ERRORS and how many other persons the box holds."""
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


def error_summary(rows: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Per error of ERRORS: its std and 10th / 50th / 90th percentiles (``rows`` of
    ERRORS values)."""
    out: dict[str, Any] = {}
    for key in ERRORS:
        v = np.array([r[key] for r in rows], np.float64)
        if not len(v):
            continue
        out[f"{key}_std"] = round(float(v.std()), 4)
        out[f"{key}_p10_p50_p90"] = [round(float(t), 4) for t in np.percentile(v, [10, 50, 90])]
    return out


def detection_errors(coco: CocoPersons,
                     boxes: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any],
                                                                  list[dict[str, float]]]:
    """The detector's box errors on a split: the summary (boxes, matched share, median IoU,
    ERRORS statistics of the matched boxes, the share of matched boxes holding another
    labeled person, and that share for the GT boxes themselves) and the matched rows."""
    persons: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for ann in coco.training_persons():
        persons[ann["image_id"]].append(ann)
    rows = [match(b["bbox"], persons[b["image_id"]]) for b in boxes]
    good = [r for r in rows if r["iou"] >= MATCH_IOU]
    gt_inside = [others_inside(p["clean_bbox"], ps, i) > 0
                 for ps in persons.values() for i, p in enumerate(ps)]
    summary: dict[str, Any] = {
        "boxes": len(rows), "matched": len(good), "match_iou": MATCH_IOU,
        "iou_median": round(float(np.median([r["iou"] for r in rows])), 4) if rows else None,
        **error_summary(good),
        "share_with_another_person_inside": (round(float(np.mean([r["others"] > 0
                                                                   for r in good])), 4)
                                             if good else None),
        "gt_boxes_share_with_another_person_inside": (round(float(np.mean(gt_inside)), 4)
                                                      if gt_inside else None),
    }
    return summary, good


def crop_errors(center_jitter: Sequence[float], scale_factor: float, samples: int,
                seed: int = 0) -> list[dict[str, float]]:
    """``samples`` training crops' errors against their box, drawn as the training crops
    are (their size factor scales both sides)."""
    rng = np.random.default_rng(seed)
    std = np.asarray(center_jitter, np.float64)
    rows = []
    for _ in range(samples):
        dx, dy = center_offset(rng, std) if std.any() else (0.0, 0.0)
        log2s = float(np.log2(scale_draw(rng, scale_factor)))
        rows.append({"dx": float(dx), "dy": float(dy), "log2w": log2s, "log2h": log2s})
    return rows


def plot_box_errors(detected: Sequence[Mapping[str, float]],
                    crops: Mapping[str, Sequence[Mapping[str, float]]],
                    path: str | Path) -> None:
    """A PNG of the detector's matched box errors next to each schedule's training crops:
    one panel per error of ERRORS, a density histogram per source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"dx": "centre offset x (GT-box widths)", "dy": "centre offset y (GT-box heights)",
              "log2w": "log2 width ratio", "log2h": "log2 height ratio"}
    fig, axes = plt.subplots(1, len(ERRORS), figsize=(3.4 * len(ERRORS), 3.0))
    sources = {"detector": detected, **{f"{name} crops": rows for name, rows in crops.items()}}
    for ax, key in zip(axes, ERRORS, strict=True):
        bins = np.linspace(-0.6, 0.6, 49)
        for label, rows in sources.items():
            values = np.clip([r[key] for r in rows], bins[0], bins[-1])
            if len(values):
                ax.hist(values, bins=bins, density=True, histtype="step", label=label)
        ax.set_title(titles[key], fontsize=9)
        ax.set_yticks([])
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
