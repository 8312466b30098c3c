"""Keypoints <-> heatmaps, the two directions in one place (as mmpose's MSRA heatmap codec).

Letters in shapes: N instances, K keypoints, [W, H] input size, [w, h] heatmap size.
``encode`` makes HRNet's training targets; ``decode`` turns predicted heatmaps into image
coordinates with HRNet's quarter-pixel refinement and the inverse crop transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HeatmapCodec:
    """Gaussian heatmaps at 1/stride of the input, as HRNet."""

    input_size: tuple[int, int]  # (W, H)
    heatmap_size: tuple[int, int]  # (w, h)
    sigma: float

    @classmethod
    def for_input(cls, input_width: int, input_height: int, sigma_at_64: float,
                  stride: int = 4) -> HeatmapCodec:
        """Codec for an input size with the heatmap at 1/4; ``sigma_at_64`` is the sigma of a
        64-pixel-high heatmap (HRNet's 2 at 64x48), scaled to this heatmap's height."""
        hw, hh = input_width // stride, input_height // stride
        return cls((input_width, input_height), (hw, hh), sigma_at_64 * hh / 64.0)

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """keypoints (K, 2) in input pixels, visible (K,) bool -> target (K, h, w) float32 and
        target_weight (K, 1) float32. As HRNet: the Gaussian (peak 1) is centred on
        int(x / stride + 0.5) within a (6 sigma + 1) window; a joint whose window lies fully
        off the heatmap, or an unlabeled one, gets weight 0 and an empty map."""
        w, h = self.heatmap_size
        stride = np.array(self.input_size, dtype=np.float64) / np.array([w, h])
        mu = np.trunc(keypoints / stride + 0.5)  # int() of a positive-or-negative float
        radius = 3 * self.sigma
        ul = np.trunc(mu - radius)
        br = np.trunc(mu + radius + 1)
        inside = (ul[:, 0] < w) & (ul[:, 1] < h) & (br[:, 0] >= 0) & (br[:, 1] >= 0)
        weight = (np.asarray(visible, dtype=bool) & inside).astype(np.float32)
        xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
        gx = np.exp(-((xs[None] - mu[:, :1]) ** 2) / (2 * self.sigma**2))
        gy = np.exp(-((ys[None] - mu[:, 1:]) ** 2) / (2 * self.sigma**2))
        gx *= (xs[None] >= ul[:, :1]) & (xs[None] < br[:, :1])
        gy *= (ys[None] >= ul[:, 1:]) & (ys[None] < br[:, 1:])
        target = gy[:, :, None] * gx[:, None, :] * weight[:, None, None]
        return target.astype(np.float32), weight[:, None]

    def decode(
        self, heatmaps: np.ndarray, centers: np.ndarray, sizes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """See :func:`decode`."""
        return decode(heatmaps, centers, sizes)


def decode(
    heatmaps: np.ndarray, centers: np.ndarray, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """heatmaps (N, K, h, w), crop centers (N, 2) and crop sizes (N, 2) in image pixels (the
    region warped to the network input) -> coords (N, K, 2) in image pixels and maxvals
    (N, K, 1). As HRNet: argmax (first maximum on ties), coordinates zeroed where the maximum
    is not positive, a quarter-pixel step toward the larger neighbour when
    1 < x < w-1 and 1 < y < h-1, then the inverse of the crop transform."""
    heatmaps = np.asarray(heatmaps)
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    idx = flat.argmax(axis=2)
    maxvals = np.take_along_axis(flat, idx[..., None], axis=2).astype(np.float32)
    px = (idx % w).astype(np.float64)
    py = (idx // w).astype(np.float64)
    positive = maxvals[..., 0] > 0
    px *= positive
    py *= positive
    ix, iy = px.astype(np.int64), py.astype(np.int64)
    inner = (ix > 1) & (ix < w - 1) & (iy > 1) & (iy < h - 1)
    # Neighbour lookups, clamped so that border joints read something valid (then masked out).
    cx, cy = np.clip(ix, 1, w - 2), np.clip(iy, 1, h - 2)
    base = np.arange(n * k).reshape(n, k) * (h * w)
    hm = heatmaps.reshape(-1)

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        return hm[base + yy * w + xx].astype(np.float64)

    dx = np.sign(at(iy.clip(0, h - 1), cx + 1) - at(iy.clip(0, h - 1), cx - 1))
    dy = np.sign(at(cy + 1, ix.clip(0, w - 1)) - at(cy - 1, ix.clip(0, w - 1)))
    px += 0.25 * dx * inner
    py += 0.25 * dy * inner
    centers = np.asarray(centers, dtype=np.float64)[:, None, :]
    sizes = np.asarray(sizes, dtype=np.float64)[:, None, :]
    coords = np.stack([px, py], axis=-1)
    coords = centers + (coords - np.array([w, h]) * 0.5) * sizes / np.array([w, h])
    return coords.astype(np.float32), maxvals


def cue_map(point: np.ndarray, input_size: tuple[int, int], sigma: float) -> np.ndarray:
    """The instance-cue input: a single-channel Gaussian (peak 1) at ``point`` (x, y) in input
    pixels, shape (1, H, W) float32."""
    w, h = input_size
    xs = np.arange(w, dtype=np.float32)
    ys = np.arange(h, dtype=np.float32)
    gx = np.exp(-((xs - point[0]) ** 2) / (2 * sigma**2))
    gy = np.exp(-((ys - point[1]) ** 2) / (2 * sigma**2))
    return (gy[:, None] * gx[None, :])[None].astype(np.float32)
