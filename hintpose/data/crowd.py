"""CrowdPose crowd index and crowd levels (thresholds of the CrowdPose evaluation code), box
IoU, and the point that marks a person inside a box (oracle instance cues)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Crowd-level bounds as in crowdposetools/xtcocotools ``get_type_result(first=0.2, second=0.8)``.
CROWD_LEVELS: dict[str, tuple[float, float]] = {
    "easy": (0.0, 0.2),
    "medium": (0.2, 0.8),
    "hard": (0.8, float("inf")),
}


def points_in_box(points: np.ndarray, bbox: Sequence[float]) -> np.ndarray:
    """Which of the points (N, 2+) lie inside the COCO box (x, y, w, h), edges included."""
    x, y, w, h = bbox
    px, py = points[:, 0], points[:, 1]
    return (px >= x) & (px <= x + w) & (py >= y) & (py <= y + h)


def crowd_index(annotations: Sequence[dict]) -> float:
    """Mean over annotated persons of (other persons' labeled joints inside this person's box)
    divided by (this person's labeled joints); persons without labeled joints are skipped.

    Each annotation needs COCO ``bbox`` (x, y, w, h) and ``keypoints`` (x1, y1, v1, ...).
    An image with no labeled person has crowd index 0.
    """
    persons = [a for a in annotations if not a.get("iscrowd", 0)]
    if not persons:
        return 0.0
    kpts = [np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3) for a in persons]
    labeled = [k[k[:, 2] > 0, :2] for k in kpts]
    ratios = []
    for i, ann in enumerate(persons):
        if len(labeled[i]) == 0:
            continue
        others = [labeled[j] for j in range(len(persons)) if j != i]
        n_inside = int(points_in_box(np.concatenate(others), ann["bbox"]).sum()) if others else 0
        ratios.append(n_inside / len(labeled[i]))
    return float(np.mean(ratios)) if ratios else 0.0


def box_iou(box: Sequence[float], others: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """IoU of one COCO box (x, y, w, h) with each of ``others`` (M, 4); 0 for empty unions."""
    b = np.asarray(others, dtype=np.float64).reshape(-1, 4)
    x1, y1 = np.maximum(box[0], b[:, 0]), np.maximum(box[1], b[:, 1])
    x2 = np.minimum(box[0] + box[2], b[:, 0] + b[:, 2])
    y2 = np.minimum(box[1] + box[3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = box[2] * box[3] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def oracle_point(keypoints: Sequence[float], bbox: Sequence[float]) -> tuple[float, float] | None:
    """A person's cue inside ``bbox``: of its labeled joints inside the box (the visible ones
    when there are any) the one nearest their centroid; None when none is inside."""
    kpts = np.asarray(keypoints, np.float64).reshape(-1, 3)
    inside = (kpts[:, 2] > 0) & points_in_box(kpts[:, :2], bbox)
    visible = inside & (kpts[:, 2] >= 2)
    chosen = kpts[visible if visible.any() else inside, :2]
    if not len(chosen):
        return None
    j = int(np.argmin(np.hypot(*(chosen - chosen.mean(0)).T)))
    return float(chosen[j, 0]), float(chosen[j, 1])


def crowd_level(index: float) -> str:
    """Name of the crowd level (easy / medium / hard) an image's crowd index falls into."""
    for name, (lo, hi) in CROWD_LEVELS.items():
        if lo <= index < hi:
            return name
    return "hard"
