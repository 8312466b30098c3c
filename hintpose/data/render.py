"""Drawing the synthetic scenes (see hintpose.data.synthetic): a person's body parts into its
label map and, coloured, lit and textured, onto the canvas; the background behind them.

Everything here gives the same bits on every x86-64 CPU: OpenCV only rasterises on integer
(fixed-point) coordinates, and colours, textures and resampling use hintpose.data.portable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from hintpose.data.figures import HEAD, SKIN, TORSO_UP, Figure, Part
from hintpose.data.params import SyntheticConfig
from hintpose.data.portable import cos, resize_cubic, resize_linear, sin

_SHIFT = 4  # OpenCV fixed-point bits: sub-pixel accurate drawing
_ONE = 1 << _SHIFT

# --------------------------------------------------------------------------- renderer


def _draw(img: np.ndarray, part: Part, color: float | tuple, q: np.ndarray) -> None:
    """Draw one primitive; ``q`` holds the figure's points in crop pixels, fixed point."""
    i = part.idx
    if part.kind == "line":
        cv2.line(img, (int(q[i[0], 0]), int(q[i[0], 1])), (int(q[i[1], 0]), int(q[i[1], 1])),
                 color, max(1, round(part.size[0])), cv2.LINE_8, _SHIFT)
    elif part.kind == "poly":
        cv2.fillConvexPoly(img, cv2.convexHull(q[list(i)]), color, cv2.LINE_8, _SHIFT)
    elif part.kind == "ellipse":
        axes = (max(1, round(part.size[0] * _ONE)), max(1, round(part.size[1] * _ONE)))
        cv2.ellipse(img, (int(q[i[0], 0]), int(q[i[0], 1])), axes, part.size[2], 0, 360, color,
                    -1, cv2.LINE_8, _SHIFT)
    else:
        cv2.circle(img, (int(q[i[0], 0]), int(q[i[0], 1])), max(1, round(part.size[0] * _ONE)),
                   color, -1, cv2.LINE_8, _SHIFT)


def _texture(fig: Figure, h: int, w: int, x0: float, y0: float, rng: np.random.Generator,
             textures: bool = True) -> np.ndarray | None:
    """Multiplicative clothing texture (h, w) around 0: stripes, blotches, checks or None (also
    without ``textures``, after the same random draws)."""
    kind, amp, period, ang = fig.texture
    if kind == 0:
        return None
    if kind == 2:
        small = rng.uniform(-amp, amp, (h // 6 + 2, w // 6 + 2)).astype(np.float32)
        return resize_linear(small, w, h).astype(np.float32) if textures else None
    if not textures:
        return None
    xs = np.arange(w, dtype=np.float32)[None, :] + np.float32(x0)
    ys = np.arange(h, dtype=np.float32)[:, None] + np.float32(y0)
    sa, ca, f = np.float32(sin(ang)), np.float32(cos(ang)), np.float32(2.0 / period)
    # a square wave: sin(2 pi t) > 0 where floor(2 t) is even (no sine per pixel)
    up = np.floor((xs * sa + ys * ca) * f).astype(np.int32) & 1
    if kind == 3:
        up = up ^ (np.floor((xs * ca - ys * sa) * f).astype(np.int32) & 1)
    return np.where(up == 0, np.float32(amp), np.float32(-amp))


@dataclass
class Drawn:
    """Where a person landed: crop origin and its own label map (for joint visibility)."""

    x0: int
    y0: int
    label: np.ndarray


def render(canvas: np.ndarray, owner: np.ndarray, fig: Figure, px: float, py: float, k: int,
            rng: np.random.Generator, textures: bool = True) -> Drawn | None:
    """Draw ``fig`` with its pelvis at (px, py) over ``canvas``; mark its pixels ``k`` in
    ``owner``. Returns None when nothing of it lands inside the image."""
    hh, ww = owner.shape
    ex0, ey0, ex1, ey1 = fig.extent
    x0, y0 = max(0, math.floor(px + ex0)), max(0, math.floor(py + ey0))
    x1, y1 = min(ww, math.ceil(px + ex1) + 1), min(hh, math.ceil(py + ey1) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    ox, oy = x0 - px, y0 - py  # crop origin in figure coordinates
    label = np.zeros((y1 - y0, x1 - x0), np.uint8)
    q = np.round((fig.points - (ox, oy)) * _ONE).astype(np.int32)
    for part in fig.parts:
        _draw(label, part, part.pid, q)
    mask = label > 0
    if not mask.any():
        return None
    h, w = label.shape
    strength, ang = fig.light
    xs = np.arange(w, dtype=np.float32)[None, :] + np.float32(ox)
    ys = np.arange(h, dtype=np.float32)[:, None] + np.float32(oy)
    ramp = 1.0 + (xs * np.float32(cos(ang)) + ys * np.float32(sin(ang))) * np.float32(
        strength / fig.height)
    tex = _texture(fig, h, w, ox, oy, rng, textures)  # draws either way: the same stream
    mult = ramp if tex is None else ramp * (1.0 + tex * fig.cloth[label])
    base = np.clip(fig.palette, 0, 255).astype(np.uint8)[label]
    col = np.clip(np.rint(base * mult[..., None]), 0, 255).astype(np.uint8)
    shade = 1.0 + ((ox + (w - 1) / 2) * cos(ang) + (oy + (h - 1) / 2) * sin(ang)) * (
        strength / fig.height)  # the mean of ramp
    for pid in (HEAD, TORSO_UP):  # face, ears, neckline: only where that part shows
        marks = [d for d in fig.details if d.pid == pid]
        if not marks:
            continue
        near = fig.points[[j for d in marks for j in d.idx]] - (ox, oy)
        r = 2.0 + max(max(d.size[:2]) if d.size else 0.0 for d in marks)
        lo, hi = np.floor(near.min(0) - r).astype(int), np.ceil(near.max(0) + r).astype(int)
        wx0, wy0, wx1, wy1 = max(0, lo[0]), max(0, lo[1]), min(w, hi[0]), min(h, hi[1])
        if wx1 <= wx0 or wy1 <= wy0:
            continue
        sel = label[wy0:wy1, wx0:wx1] == pid
        win = col[wy0:wy1, wx0:wx1]
        det = win.copy()
        for d in marks:
            tone = tuple(float(c) for c in np.clip(fig.palette[0] * d.tone * shade, 0, 255))
            _draw(det, d, tone, q - (wx0 * _ONE, wy0 * _ONE))
        win[sel] = det[sel]
    np.copyto(canvas[y0:y1, x0:x1], col, where=mask[..., None])
    owner[y0:y1, x0:x1][mask] = k
    return Drawn(x0, y0, label)


def background(rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """Gradient + blotchy texture + distractor shapes (some limb-like bars and blobs)."""
    w, h = cfg.image_width, cfg.image_height
    u = rng.uniform
    cell = int(rng.choice([8, 16, 32]))  # texture grain; built small, then upsampled

    def layer(rows: int) -> np.ndarray:
        """A linear colour gradient plus blotches over ``rows`` image rows."""
        gh, gw = max(2, rows // cell + 2), w // cell + 2
        c0, c1 = rng.uniform(30, 225, (2, 3))
        ang = u(0, 2 * math.pi)
        t = np.add.outer(np.linspace(0, sin(ang), gh), np.linspace(0, cos(ang), gw))
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        small = c0 + (c1 - c0) * t[..., None] + rng.uniform(-1, 1, (gh, gw, 3)) * u(8, 35)
        small = np.clip(small, 0, 255).astype(np.uint8)
        return resize_cubic(small, w, rows)

    img = layer(h)
    if rng.random() < 0.6:  # a floor below a horizon
        horizon = int(u(0.3, 0.75) * h)
        img[horizon:] = layer(h - horizon)
    n = int(rng.poisson(cfg.distractors)) if cfg.distractors else 0
    # A plain look makes the same draws (so the persons after them stay the same) but paints
    # the shapes on a scratch copy.
    shapes = img if cfg.look == "textured" else img.copy()
    for _ in range(n):
        kind = int(rng.integers(7))
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        cx, cy = u(-0.1, 1.1) * w, u(-0.1, 1.1) * h
        size = u(0.03, 0.25) * h
        if kind == 0:  # rectangle
            p0 = (int(cx), int(cy))
            p1 = (int(cx + u(-1, 1) * size * 2), int(cy + u(-1, 1) * size * 2))
            cv2.rectangle(shapes, p0, p1, color, -1)
        elif kind == 1:  # disc or ring
            cv2.circle(shapes, (int(cx), int(cy)), int(size / 2) + 1, color,
                       -1 if rng.random() < 0.6 else int(u(1, 5)), cv2.LINE_AA)
        elif kind == 2:  # random polygon
            poly = np.stack([cx + u(-1, 1, 5) * size, cy + u(-1, 1, 5) * size], 1)
            cv2.fillPoly(shapes, [poly.astype(np.int32)], color, cv2.LINE_AA)
        elif kind == 3:  # thin line
            cv2.line(shapes, (int(cx), int(cy)), (int(u(0, w)), int(u(0, h))), color,
                     int(u(1, 4)), cv2.LINE_AA)
        elif kind in (4, 5):  # limb-like bar (sometimes bent), skin or cloth coloured
            if rng.random() < 0.5:
                color = tuple(float(c) for c in SKIN[rng.integers(len(SKIN))])
            thick = max(2, int(u(0.02, 0.07) * h))
            a = u(0, 2 * math.pi)
            p0 = np.array([cx, cy])
            for _seg in range(1 + int(rng.random() < 0.4)):
                p1 = p0 + size * np.array([cos(a), sin(a)])
                cv2.line(shapes, tuple(map(int, p0)), tuple(map(int, p1)), color, thick,
                         cv2.LINE_AA)
                p0, a = p1, a + u(-2, 2)
        else:  # head-like blob
            axes = (int(size / 3) + 1, int(size / 2.5) + 1)
            cv2.ellipse(shapes, (int(cx), int(cy)), axes, u(0, 180), 0, 360, color, -1,
                        cv2.LINE_AA)
    return img
