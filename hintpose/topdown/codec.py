"""Keypoints <-> heatmaps, the two directions in one place (as mmpose's MSRA heatmap codec).

Letters in shapes: N instances, K keypoints, [W, H] input size, [w, h] heatmap size.
``encode`` makes the training targets: HRNet's (the Gaussian centred on the joint's nearest
heatmap pixel) or DARK's unbiased ones (centred on the joint itself, sub-pixel). ``decode``
turns predicted heatmaps into image coordinates: the argmax, refined by HRNet's quarter-pixel
step or by DARK's Taylor expansion of the Gaussian-smoothed log-heatmap (Zhang et al.,
"Distribution-Aware Coordinate Representation for Human Pose Estimation", CVPR 2020), then
the inverse crop transform. At heatmaps of 24x18 the quarter-pixel step alone leaves joints
up to half a heatmap pixel (a sixth of a small person's OKS tolerance) off.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Training targets: HRNet's (centre rounded to a heatmap pixel) | DARK's unbiased (sub-pixel).
TARGETS = ("hrnet", "unbiased")
#: Decoders: HRNet's quarter-pixel step | DARK's Taylor step on the smoothed log-heatmap.
DECODERS = ("hrnet", "dark")


@dataclass(frozen=True)
class HeatmapCodec:
    """Gaussian heatmaps at 1/stride of the input, as HRNet."""

    input_size: tuple[int, int]  # (W, H)
    heatmap_size: tuple[int, int]  # (w, h)
    sigma: float
    target: str = "hrnet"  # one of TARGETS

    @classmethod
    def for_input(cls, input_width: int, input_height: int, sigma_at_64: float,
                  stride: int = 4, target: str = "hrnet") -> HeatmapCodec:
        """Codec for an input size with the heatmap at 1/4; ``sigma_at_64`` is the sigma of a
        64-pixel-high heatmap (HRNet's 2 at 64x48), scaled to this heatmap's height."""
        hw, hh = input_width // stride, input_height // stride
        return cls((input_width, input_height), (hw, hh), sigma_at_64 * hh / 64.0, target)

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """keypoints (K, 2) in input pixels, visible (K,) bool -> target (K, h, w) float32 and
        target_weight (K, 1) float32. As HRNet: the Gaussian (peak 1) is centred on
        int(x / stride + 0.5) within a (6 sigma + 1) window; a joint whose window lies fully
        off the heatmap, or an unlabeled one, gets weight 0 and an empty map. With the
        ``unbiased`` target the Gaussian is centred on x / stride itself (its peak then lies
        between pixels and is below 1), with the same window and weights."""
        w, h = self.heatmap_size
        stride = np.array(self.input_size, dtype=np.float64) / np.array([w, h])
        rounded = np.trunc(keypoints / stride + 0.5)  # int() of a positive-or-negative float
        mu = keypoints / stride if self.target == "unbiased" else rounded
        radius = 3 * self.sigma
        ul = np.trunc(rounded - radius)
        br = np.trunc(rounded + radius + 1)
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
        self, heatmaps: np.ndarray, centers: np.ndarray, sizes: np.ndarray,
        method: str = "hrnet",
    ) -> tuple[np.ndarray, np.ndarray]:
        """See :func:`decode` (DARK smooths with this codec's sigma)."""
        return decode(heatmaps, centers, sizes, method, self.sigma)


def _smooth(heatmaps: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (std ``sigma`` heatmap pixels, 6 sigma + 1 taps, mirrored borders as
    OpenCV's default) of every (h, w) map of (N, K, h, w), in float32 (DARK's step 1; its
    rescaling to the original maximum is left out: a constant factor does not change the
    derivatives of the log)."""
    n, k, h, w = heatmaps.shape
    r = max(1, int(np.ceil(3 * sigma)))
    maps = np.ascontiguousarray(heatmaps, dtype=np.float32).reshape(n * k, h, w)
    out = np.empty_like(maps)
    chunk = 512  # OpenCV's channel limit: maps go through as the channels of one image
    for start in range(0, n * k, chunk):
        part = np.ascontiguousarray(maps[start:start + chunk].transpose(1, 2, 0))
        blurred = cv2.GaussianBlur(part, (2 * r + 1, 2 * r + 1), sigma, sigmaY=sigma,
                                   borderType=cv2.BORDER_REFLECT_101)
        out[start:start + chunk] = blurred.reshape(h, w, -1).transpose(2, 0, 1)
    return out.reshape(n, k, h, w)


def _dark_offsets(heatmaps: np.ndarray, ix: np.ndarray, iy: np.ndarray,
                  sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """DARK's sub-pixel step at the integer maxima (ix, iy): the Newton step -H^-1 g of the
    smoothed log-heatmap (central differences, borders replicated), limited to one pixel;
    0 where the Hessian is not negative definite (no Gaussian-like peak)."""
    n, k, h, w = heatmaps.shape
    logh = np.log(np.maximum(_smooth(heatmaps, sigma), 1e-10))
    p = np.pad(logh, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    nn, kk = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    x, y = ix + 1, iy + 1

    def at(dy: int, dx: int) -> np.ndarray:
        return p[nn, kk, y + dy, x + dx]

    c = at(0, 0)
    gx, gy = 0.5 * (at(0, 1) - at(0, -1)), 0.5 * (at(1, 0) - at(-1, 0))
    hxx, hyy = at(0, 1) - 2 * c + at(0, -1), at(1, 0) - 2 * c + at(-1, 0)
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = hxx * hyy - hxy**2
    ok = (hxx < 0) & (det > 0)
    det = np.where(ok, det, 1.0)
    ox = np.where(ok, -(hyy * gx - hxy * gy) / det, 0.0)
    oy = np.where(ok, -(hxx * gy - hxy * gx) / det, 0.0)
    return np.clip(ox, -1.0, 1.0), np.clip(oy, -1.0, 1.0)


def decode(
    heatmaps: np.ndarray, centers: np.ndarray, sizes: np.ndarray, method: str = "hrnet",
    sigma: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """heatmaps (N, K, h, w), crop centers (N, 2) and crop sizes (N, 2) in image pixels (the
    region warped to the network input) -> coords (N, K, 2) in image pixels and maxvals
    (N, K, 1). As HRNet: argmax (first maximum on ties), coordinates zeroed where the maximum
    is not positive, a quarter-pixel step toward the larger neighbour when
    1 < x < w-1 and 1 < y < h-1, then the inverse of the crop transform. ``method`` ``dark``
    replaces the quarter-pixel step by DARK's Taylor step (:func:`_dark_offsets`, smoothing
    with the targets' ``sigma`` in heatmap pixels) wherever the maximum is positive."""
    if method not in DECODERS:
        raise ValueError(f"unknown heatmap decoder {method!r} (known: {', '.join(DECODERS)})")
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

    if method == "dark":
        ox, oy = _dark_offsets(heatmaps, ix, iy, sigma)
        px += ox * positive
        py += oy * positive
    else:
        dx = np.sign(at(iy.clip(0, h - 1), cx + 1) - at(iy.clip(0, h - 1), cx - 1))
        dy = np.sign(at(cy + 1, ix.clip(0, w - 1)) - at(cy - 1, ix.clip(0, w - 1)))
        px += 0.25 * dx * inner
        py += 0.25 * dy * inner
    centers = np.asarray(centers, dtype=np.float64)[:, None, :]
    sizes = np.asarray(sizes, dtype=np.float64)[:, None, :]
    coords = np.stack([px, py], axis=-1)
    coords = centers + (coords - np.array([w, h]) * 0.5) * sizes / np.array([w, h])
    return coords.astype(np.float32), maxvals
