"""Geometry of crops and flips shared by every network's samples: boxes -> crop center and
size (image pixels), the affine map of a crop onto a network input, left/right flips of
keypoints and heatmaps, HRNet's half-body crop, and the image -> normalised tensor step."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
LOWER_BODY_WORDS = ("hip", "knee", "ankle")


def image_tensor(crop: np.ndarray) -> torch.Tensor:
    """A BGR uint8 crop (H, W, 3) -> the network's RGB input (3, H, W), ImageNet-normalised."""
    rgb = crop[:, :, ::-1].astype(np.float32) / 255.0
    return torch.from_numpy(((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).copy())


def flip_pairs_from_names(names: Sequence[str]) -> list[tuple[int, int]]:
    """Left/right joint pairs from keypoint names (``left_x`` <-> ``right_x``)."""
    index = {n: i for i, n in enumerate(names)}
    return [(i, index["right_" + n[5:]]) for i, n in enumerate(names)
            if n.startswith("left_") and "right_" + n[5:] in index]


def upper_body_mask(names: Sequence[str]) -> np.ndarray:
    """True for joints above the hips (HRNet's half-body split: COCO joints 0-10)."""
    return np.array([not any(w in n for w in LOWER_BODY_WORDS) for n in names])


def box_to_center_size(
    bbox: Sequence[float], aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """COCO box (x, y, w, h) -> crop center and size in pixels: the box widened or heightened
    to the input's aspect ratio (w / h), then padded (HRNet's 1.25)."""
    x, y, w, h = (float(v) for v in bbox)
    center = np.array([x + w * 0.5, y + h * 0.5])
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return center, np.array([w, h]) * padding


def affine_matrix(
    center: np.ndarray, size: np.ndarray, rotation: float, output_size: tuple[int, int],
    inverse: bool = False,
) -> np.ndarray:
    """(2, 3) matrix mapping image pixels to output pixels: the crop of ``size`` around
    ``center``, rotated by ``rotation`` degrees (HRNet's sign), onto ``output_size`` (W, H).
    With ``inverse`` it maps output pixels back to the image."""
    out = np.asarray(output_size, dtype=np.float64)
    scale = out / np.asarray(size, dtype=np.float64)
    t = np.deg2rad(rotation)
    c, s = np.cos(t), np.sin(t)
    rot = np.array([[c, s], [-s, c]])  # turns the image direction at `rotation` to upright
    lin = np.diag(scale) @ rot
    m = np.concatenate([lin, (out * 0.5 - lin @ np.asarray(center, np.float64))[:, None]], 1)
    return cv2.invertAffineTransform(m) if inverse else m


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to points (..., 2)."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def flip_keypoints(
    keypoints: np.ndarray, image_width: int, flip_pairs: Sequence[tuple[int, int]]
) -> np.ndarray:
    """Mirror keypoints (K, 3) horizontally (x' = W - x - 1) and swap left/right joints;
    unlabeled joints stay at zero."""
    out = keypoints.copy()
    out[:, 0] = np.where(out[:, 2] > 0, image_width - out[:, 0] - 1, 0)
    for a, b in flip_pairs:
        out[[a, b]] = out[[b, a]]
    return out


def flip_heatmaps_back(heatmaps: torch.Tensor, flip_pairs: Sequence[tuple[int, int]],
                       shift: bool = True) -> torch.Tensor:
    """Heatmaps (N, K, h, w) predicted on a mirrored input -> the unmirrored frame: mirror the
    width axis, swap left/right channels and (HRNet's test flip) shift one pixel right."""
    out = heatmaps.flip(3)
    perm = list(range(out.shape[1]))
    for a, b in flip_pairs:
        perm[a], perm[b] = perm[b], perm[a]
    out = out[:, perm]
    if shift:
        out = torch.cat([out[..., :1], out[..., :-1]], dim=3)
    return out


def half_body_crop(
    keypoints: np.ndarray, upper: np.ndarray, aspect_ratio: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """HRNet's half-body transform: a crop around the upper body (when a normal draw is
    below 0.5) or the lower body, from the extent of its labeled joints, scaled x1.5."""
    labeled = keypoints[:, 2] > 0
    up, low = np.flatnonzero(labeled & upper), np.flatnonzero(labeled & ~upper)
    chosen = up if rng.standard_normal() < 0.5 and len(up) > 2 else low
    if len(chosen) < 2:
        chosen = up if len(up) >= 2 else chosen
    if len(chosen) < 2:
        return None
    pts = keypoints[chosen, :2]
    lo, hi = pts.min(0), pts.max(0)
    w, h = hi - lo
    center = (lo + hi) * 0.5
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return center, np.array([w, h]) * 1.5
