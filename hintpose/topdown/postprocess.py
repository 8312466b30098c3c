"""HRNet's post-processing of top-down predictions: heatmaps -> poses (decode, rescoring,
per-image OKS-NMS), and the OKS of COCO and of HRNet's NMS.

Keypoints are (N, J, 3) as (x, y, score) in image pixels. The functions follow the official
HRNet code, including its tie-breaking (candidates in the order of ``np.argsort(scores)[::-1]``)
and its use of every joint in the OKS (the published evaluation passes no visibility
threshold), with the area of the padded crop box as the OKS scale.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hintpose.data.keypoints import COCO_SIGMAS
from hintpose.topdown.codec import decode

if TYPE_CHECKING:
    from hintpose.config import EvalParams
    from hintpose.data.coco import CocoPersons


def rescore(keypoints: np.ndarray, box_scores: np.ndarray, thr: float = 0.2) -> np.ndarray:
    """Instance scores: box score x mean of the keypoint scores above ``thr`` (0 when none)."""
    s = np.asarray(keypoints)[..., 2]
    above = s > thr
    count = above.sum(axis=1)
    mean = np.where(count > 0, (s * above).sum(axis=1) / np.maximum(count, 1), 0.0)
    return mean * np.asarray(box_scores, dtype=np.float64)


def decay_neighbour_poses(keypoints: np.ndarray, scores: np.ndarray, groups: np.ndarray,
                          boxes: np.ndarray, decay: float, thr: float = 0.2) -> np.ndarray:
    """Cue-aware scoring (MIPNet's ``DECAY_THRE``): among the poses of one box (equal
    ``groups``; one per instance cue), the primary pose keeps its score and every other is
    multiplied by ``decay``. The primary pose is the one whose joints scoring above ``thr``
    span the box best (IoU of their extent with the box, x, y, w, h; ties: the first).
    ``decay`` 1 changes nothing (the report: every cue's pose is scored alike)."""
    scores = np.asarray(scores, dtype=np.float64)
    if decay == 1.0 or len(scores) == 0:
        return scores
    kp = np.asarray(keypoints, dtype=np.float64)
    conf = kp[..., 2] > thr
    big = np.where(conf[..., None], kp[..., :2], np.inf)
    small = np.where(conf[..., None], kp[..., :2], -np.inf)
    lo, hi = big.min(axis=1), small.max(axis=1)  # (N, 2); inf / -inf without a joint
    b = np.asarray(boxes, dtype=np.float64)
    iw = np.clip(np.minimum(hi[:, 0], b[:, 0] + b[:, 2]) - np.maximum(lo[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(hi[:, 1], b[:, 1] + b[:, 3]) - np.maximum(lo[:, 1], b[:, 1]), 0, None)
    inter = np.where(conf.sum(axis=1) >= 2, iw * ih, 0.0)
    pose_area = np.where(conf.sum(axis=1) >= 2, (hi - lo).prod(axis=1), 0.0)
    iou = inter / np.maximum(pose_area + b[:, 2] * b[:, 3] - inter, 1e-9)
    out = scores * decay
    groups = np.asarray(groups)
    order = np.lexsort((-iou, groups))  # by group, best fit first within a group
    first = np.ones(len(order), bool)
    first[1:] = groups[order][1:] != groups[order][:-1]
    out[order[first]] = scores[order[first]]
    return out


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


def keypoint_similarity(d2: np.ndarray, area: float, sigmas: np.ndarray) -> np.ndarray:
    """COCO's per-joint keypoint similarity exp(-d^2 / (2 area (2 sigma)^2)) of squared
    distances ``d2`` (..., J) at object scale ``area``."""
    return np.exp(-d2 / (2 * sigmas) ** 2 / (area + np.spacing(1)) / 2)


def coco_oks(gt: np.ndarray, preds: np.ndarray, area: float,
             sigmas: np.ndarray = COCO_SIGMAS) -> np.ndarray:
    """COCO's OKS of predictions (M, J, 2+) against one GT pose (J, 3): over its labeled
    joints, scale from its area (0 when the GT has no labeled joint)."""
    labeled = gt[:, 2] > 0
    if not labeled.any():
        return np.zeros(len(preds))
    d2 = ((preds[:, labeled, :2] - gt[None, labeled, :2]) ** 2).sum(-1)
    return keypoint_similarity(d2, area, sigmas[labeled]).mean(axis=1)


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


def nms_per_image(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray,
                  image_ids: Sequence[int], thr: float = 0.9, soft: bool = False,
                  sigmas: np.ndarray | None = None) -> list[int]:
    """(Soft) OKS-NMS of the poses of each image separately: the kept indices, image by image
    in increasing id order, highest score first within an image."""
    by_image: dict[int, list[int]] = defaultdict(list)
    for i, iid in enumerate(image_ids):
        by_image[int(iid)].append(i)
    nms = soft_oks_nms if soft else oks_nms
    kept: list[int] = []
    for iid in sorted(by_image):
        idx = np.asarray(by_image[iid])
        kept += [int(idx[k]) for k in nms(keypoints[idx], scores[idx], areas[idx], thr, sigmas)]
    return kept


@dataclass(frozen=True)
class PostSettings:
    """How decoded poses become COCO results: HRNet's rescoring threshold (``in_vis_thr``),
    the (soft) OKS-NMS threshold, cue-aware scoring's ``neighbour_decay`` (1: the report's
    protocol, every cue's pose scored alike), and the dataset's OKS ``sigmas`` (None: COCO's)
    and person ``category_id``."""

    in_vis_thr: float = 0.2
    nms_thr: float = 0.9
    soft_nms: bool = False
    neighbour_decay: float = 1.0
    sigmas: np.ndarray | None = None
    category_id: int = 1

    @classmethod
    def of(cls, ev: EvalParams, coco: CocoPersons) -> PostSettings:
        """The ``eval`` section's, for the dataset ``coco`` (its OKS sigmas and person
        category)."""
        return cls(ev.in_vis_thr, ev.nms_thr, ev.soft_nms, ev.neighbour_decay, coco.sigmas,
                   coco.category["id"])


#: Instance-frame columns the post-processing reads (the infer index, INDEX_COLUMNS, has them).
FRAME_COLUMNS = ("image_id", "box_index", "box_x", "box_y", "box_w", "box_h", "box_score",
                 "center_x", "center_y", "size_w", "size_h")


def heatmaps_to_results(read_chunk: Callable[[slice], np.ndarray], frame: pd.DataFrame,
                        post: PostSettings, decoder: str = "hrnet", heatmap_sigma: float = 1.0,
                        chunk: int = 4096) -> list[dict[str, Any]]:
    """Decode the heatmaps of the instances of ``frame`` (row i: heatmap i, read ``chunk`` at
    a time; ``decoder`` of hintpose.topdown.codec.DECODERS, DARK smoothing with
    ``heatmap_sigma``) and turn them into COCO results (:func:`poses_to_results`)."""
    kpts = decode_heatmaps(read_chunk, len(frame), frame[["center_x", "center_y"]].to_numpy(),
                           frame[["size_w", "size_h"]].to_numpy(), decoder, heatmap_sigma, chunk)
    return poses_to_results(kpts, frame, post)


def decode_heatmaps(read_chunk: Callable[[slice], np.ndarray], n: int, centers: np.ndarray,
                    sizes: np.ndarray, decoder: str = "hrnet", heatmap_sigma: float = 1.0,
                    chunk: int = 4096) -> np.ndarray:
    """Poses (n, J, 3: x, y, maxval) of ``n`` instances' heatmaps, read ``chunk`` at a time."""
    coords, maxvals = [], []
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        c, m = decode(read_chunk(sl).astype(np.float32), centers[sl], sizes[sl], decoder,
                      heatmap_sigma)
        coords.append(c)
        maxvals.append(m)
    if n == 0:
        return np.zeros((0, 0, 3))
    return np.concatenate([np.concatenate(coords), np.concatenate(maxvals)], axis=2)


def poses_to_results(kpts: np.ndarray, frame: pd.DataFrame,
                     post: PostSettings) -> list[dict[str, Any]]:
    """Decoded poses (row i: instance i of ``frame``, FRAME_COLUMNS) to COCO results: rescore
    (box score x mean keypoint score above ``in_vis_thr``), with ``neighbour_decay`` < 1 the
    cue-aware scoring of the poses of one box (:func:`decay_neighbour_poses`), then OKS-NMS
    per image on the padded crop area."""
    if len(kpts) == 0:
        return []
    image_ids = frame["image_id"].to_numpy()
    scores = rescore(kpts, frame["box_score"].to_numpy(), post.in_vis_thr)
    if post.neighbour_decay != 1.0:
        scores = decay_neighbour_poses(kpts, scores, frame["box_index"].to_numpy(),
                                       frame[["box_x", "box_y", "box_w", "box_h"]].to_numpy(),
                                       post.neighbour_decay, post.in_vis_thr)
    areas = frame[["size_w", "size_h"]].to_numpy().astype(np.float64).prod(axis=1)
    kept = nms_per_image(kpts, scores, areas, image_ids.tolist(), post.nms_thr, post.soft_nms,
                         post.sigmas)
    return [{"image_id": int(image_ids[j]), "category_id": post.category_id,
             "keypoints": np.round(kpts[j], 3).ravel().tolist(), "score": float(scores[j])}
            for j in kept]
