"""HRNet's post-processing of top-down predictions: rescoring, OKS-NMS, soft OKS-NMS.

Keypoints are (N, J, 3) as (x, y, score) in image pixels. The functions follow the official
HRNet code, including its tie-breaking (candidates in the order of ``np.argsort(scores)[::-1]``)
and its use of every joint in the OKS (the published evaluation passes no visibility
threshold), with the area of the padded crop box as the OKS scale.
"""

from __future__ import annotations

import numpy as np

from hintpose.data.keypoints import COCO_SIGMAS


def rescore(keypoints: np.ndarray, box_scores: np.ndarray, thr: float = 0.2) -> np.ndarray:
    """Instance scores: box score x mean of the keypoint scores above ``thr`` (0 when none)."""
    s = np.asarray(keypoints)[..., 2]
    above = s > thr
    count = above.sum(axis=1)
    mean = np.where(count > 0, (s * above).sum(axis=1) / np.maximum(count, 1), 0.0)
    return mean * np.asarray(box_scores, dtype=np.float64)


def _sigmas(num_joints: int, sigmas: np.ndarray | None) -> np.ndarray:
    if sigmas is not None:
        return np.asarray(sigmas, dtype=np.float64)
    if num_joints == len(COCO_SIGMAS):
        return COCO_SIGMAS
    raise ValueError(f"no default OKS sigmas for {num_joints} joints: pass sigmas")


def oks_one_to_many(
    ref: np.ndarray, others: np.ndarray, ref_area: float, areas: np.ndarray, sigmas: np.ndarray
) -> np.ndarray:
    """OKS between one pose (J, 3+) and many (M, J, 3+), HRNet's ``oks_iou`` without a
    visibility filter: the scale is the mean of the two areas."""
    var = (2 * sigmas) ** 2
    d2 = ((others[..., :2] - ref[None, :, :2]) ** 2).sum(-1)
    e = d2 / var[None] / ((ref_area + areas)[:, None] / 2 + np.spacing(1)) / 2
    return np.exp(-e).mean(axis=1)


def coco_oks(gt: np.ndarray, preds: np.ndarray, area: float,
             sigmas: np.ndarray = COCO_SIGMAS) -> np.ndarray:
    """COCO's OKS of predictions (M, J, 3) against one GT pose (J, 3): over its labeled
    joints, scale from its area."""
    labeled = gt[:, 2] > 0
    if not labeled.any():
        return np.zeros(len(preds))
    var = (2 * sigmas[labeled]) ** 2
    d2 = ((preds[:, labeled, :2] - gt[None, labeled, :2]) ** 2).sum(-1)
    return np.exp(-d2 / var[None] / (area + np.spacing(1)) / 2).mean(axis=1)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, thr: float = 0.9,
            sigmas: np.ndarray | None = None) -> np.ndarray:
    """Greedy OKS-NMS of one image's poses; indices kept, highest score first."""
    kpts = np.asarray(keypoints, dtype=np.float64)
    if len(kpts) == 0:
        return np.zeros(0, dtype=np.int64)
    sig = _sigmas(kpts.shape[1], sigmas)
    areas = np.asarray(areas, dtype=np.float64)
    order = np.argsort(np.asarray(scores))[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        oks = oks_one_to_many(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sig)
        order = order[1:][oks <= thr]
    return np.asarray(keep, dtype=np.int64)


def soft_oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, thr: float = 0.9,
                 sigmas: np.ndarray | None = None, max_dets: int = 20) -> np.ndarray:
    """Soft OKS-NMS as HRNet: after each pick, the remaining scores are multiplied by
    exp(-oks^2 / thr) and re-sorted; at most ``max_dets`` poses are kept."""
    kpts = np.asarray(keypoints, dtype=np.float64)
    if len(kpts) == 0:
        return np.zeros(0, dtype=np.int64)
    sig = _sigmas(kpts.shape[1], sigmas)
    areas = np.asarray(areas, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores)[::-1]
    current = scores[order]
    keep = []
    while order.size > 0 and len(keep) < max_dets:
        i = order[0]
        keep.append(i)
        oks = oks_one_to_many(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sig)
        order, current = order[1:], current[1:] * np.exp(-(oks**2) / thr)
        resort = np.argsort(current)[::-1]
        order, current = order[resort], current[resort]
    return np.asarray(keep, dtype=np.int64)
