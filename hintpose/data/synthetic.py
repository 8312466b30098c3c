"""Synthetic crowded people in COCO keypoint format, deterministic from a seed.

A person is the orthographic projection of a simple 3D body: a pelvis root, sampled bone
lengths, shoulder/elbow/hip/knee angles in human ranges, a yaw that sets the facing (front,
back, left or right profile; "left" = the person's left side towards the camera) and an
in-plane lean. Body parts are drawn far to near with OpenCV into a per-person label map;
persons are composited back to front (painter's order) into an owner map, which gives each
person's visible mask and each joint's visibility: v=2 visible, v=1 labeled but hidden (by a
nearer person or by the person's own nearer limbs), v=0 unlabeled (face points turned away)
or outside the image (then x=y=0, as in COCO).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from hintpose.data.crowd import crowd_index
from hintpose.data.figures import HEAD, NUM_PARTS, OWNS, SKIN, TORSO_UP, Figure, Part, sample_figure
from hintpose.data.keypoints import person_category
from hintpose.data.params import SyntheticConfig
from hintpose.errors import DataError

_SHIFT = 4  # OpenCV fixed-point bits: sub-pixel accurate drawing
_ONE = 1 << _SHIFT
# Grouping (tuned so the default val split populates all three CrowdPose levels): in a grouped
# image a person stays alone with probability _ALONE * (1 - crowding); neighbours in a group
# stand U(0.03, 0.03 + spread) heights apart, spread = _SPREAD0 + _SPREAD1 * (1 - crowding) * U.
_ALONE, _SPREAD0, _SPREAD1 = 1.2, 0.25, 0.5
_PAIR_STD = math.sqrt(2 * (256**2 - 1) / 12)  # std of the sum of two uniform bytes


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


def _texture(fig: Figure, h: int, w: int, x0: float, y0: float,
             rng: np.random.Generator) -> np.ndarray | None:
    """Multiplicative clothing texture (h, w) around 0: stripes, blotches, checks or None."""
    kind, amp, period, ang = fig.texture
    if kind == 0:
        return None
    if kind == 2:
        small = rng.uniform(-amp, amp, (h // 6 + 2, w // 6 + 2)).astype(np.float32)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    xs = np.arange(w, dtype=np.float32)[None, :] + np.float32(x0)
    ys = np.arange(h, dtype=np.float32)[:, None] + np.float32(y0)
    f = np.float32(2 * math.pi / period)
    a = np.sin((xs * np.float32(math.sin(ang)) + ys * np.float32(math.cos(ang))) * f)
    if kind == 3:
        a = a * np.sin((xs * np.float32(math.cos(ang)) - ys * np.float32(math.sin(ang))) * f)
    return np.where(a > 0, np.float32(amp), np.float32(-amp))


@dataclass
class _Drawn:
    """Where a person landed: crop origin and its own label map (for joint visibility)."""

    x0: int
    y0: int
    label: np.ndarray


def _render(canvas: np.ndarray, owner: np.ndarray, fig: Figure, px: float, py: float, k: int,
            rng: np.random.Generator, textures: bool = True) -> _Drawn | None:
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
    ramp = 1.0 + (xs * np.float32(math.cos(ang)) + ys * np.float32(math.sin(ang))) * np.float32(
        strength / fig.height)
    tex = _texture(fig, h, w, ox, oy, rng)  # drawn either way: the same random stream
    tex = tex if textures else None
    mult = ramp if tex is None else ramp * (1.0 + tex * fig.cloth[label])
    lut = np.zeros((256, 1, 3), np.uint8)
    lut[:NUM_PARTS, 0] = np.clip(fig.palette, 0, 255)
    col = cv2.multiply(cv2.LUT(cv2.merge([label, label, label]), lut), cv2.merge([mult] * 3),
                       dtype=cv2.CV_8U)
    shade = float(ramp.mean())
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
    return _Drawn(x0, y0, label)


def _background(rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """Gradient + blotchy texture + distractor shapes (some limb-like bars and blobs)."""
    w, h = cfg.image_width, cfg.image_height
    u = rng.uniform
    cell = int(rng.choice([8, 16, 32]))  # texture grain; built small, then upsampled

    def layer(rows: int) -> np.ndarray:
        """A linear colour gradient plus blotches over ``rows`` image rows."""
        gh, gw = max(2, rows // cell + 2), w // cell + 2
        c0, c1 = rng.uniform(30, 225, (2, 3))
        ang = u(0, 2 * math.pi)
        t = np.add.outer(np.linspace(0, math.sin(ang), gh), np.linspace(0, math.cos(ang), gw))
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        small = c0 + (c1 - c0) * t[..., None] + rng.uniform(-1, 1, (gh, gw, 3)) * u(8, 35)
        small = np.clip(small, 0, 255).astype(np.uint8)
        return cv2.resize(small, (w, rows), interpolation=cv2.INTER_CUBIC)

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
                p1 = p0 + size * np.array([math.cos(a), math.sin(a)])
                cv2.line(shapes, tuple(map(int, p0)), tuple(map(int, p1)), color, thick,
                         cv2.LINE_AA)
                p0, a = p1, a + u(-2, 2)
        else:  # head-like blob
            axes = (int(size / 3) + 1, int(size / 2.5) + 1)
            cv2.ellipse(shapes, (int(cx), int(cy)), axes, u(0, 180), 0, 360, color, -1,
                        cv2.LINE_AA)
    return img


# --------------------------------------------------------------------------- layout


def _height(rng: np.random.Generator, cfg: SyntheticConfig) -> float:
    lo, hi = math.log(cfg.person_height_min), math.log(cfg.person_height_max)
    return cfg.image_height * math.exp(rng.uniform(lo, hi))


def _centre_range(lo_ext: float, hi_ext: float, size: int) -> tuple[float, float]:
    """Range of a root coordinate keeping [root + lo_ext, root + hi_ext] inside [0, size]."""
    a, b = -lo_ext, size - hi_ext
    return (a, b) if a <= b else (b, a)


def _off_frame(rng: np.random.Generator, ext: tuple[float, float, float, float],
               w: int, h: int, most: float = 0.6) -> tuple[str, float]:
    """Pick an image side and the root coordinate that puts 20% to ``most`` of ``ext`` past it."""
    x0, y0, x1, y1 = ext
    side = ("left", "right", "bottom", "top")[int(rng.choice(4, p=(0.35, 0.35, 0.25, 0.05)))]
    f = rng.uniform(0.2, most)
    if side == "left":
        return side, -f * (x1 - x0) - x0
    if side == "right":
        return side, w + f * (x1 - x0) - x1
    if side == "bottom":
        return side, h + f * (y1 - y0) - y1
    return side, -f * (y1 - y0) - y0


def _overlap(box: tuple[float, ...], others: list[tuple[float, ...]]) -> float:
    area = max(1e-6, (box[2] - box[0]) * (box[3] - box[1]))
    best = 0.0
    for o in others:
        iw = min(box[2], o[2]) - max(box[0], o[0])
        ih = min(box[3], o[3]) - max(box[1], o[1])
        if iw > 0 and ih > 0:
            best = max(best, iw * ih / area)
    return best


def _layout(rng: np.random.Generator, cfg: SyntheticConfig) -> list[tuple[Figure, float, float]]:
    """Sample persons and place them: overlapping groups plus isolated persons, in painter's
    order (farther = feet higher in the image = drawn first)."""
    w, h = cfg.image_width, cfg.image_height
    n = int(rng.integers(cfg.persons_min, cfg.persons_max + 1))
    groups: list[int] = []
    if n >= 2 and rng.random() < cfg.crowding:
        alone = rng.random(n) < _ALONE * (1.0 - cfg.crowding)
        alone[:2] = False
        left = int((~alone).sum())
        while left >= 2:
            size = min(left, int(rng.integers(2, cfg.group_size_max + 1)))
            if left - size == 1 and size < cfg.group_size_max:
                size += 1  # no one left over on their own
            groups.append(size)
            left -= size
        n_alone = int(alone.sum()) + left
    else:
        n_alone = n
    placed: list[tuple[Figure, float, float]] = []
    boxes: list[tuple[float, ...]] = []
    for size in groups:
        hg = _height(rng, cfg)
        near = rng.uniform(-1, 1, size)  # > 0: nearer the camera, larger and lower
        figs = [sample_figure(rng, hg * (1 + 0.12 * d)) for d in near]
        spread = _SPREAD0 + _SPREAD1 * (1.0 - cfg.crowding) * rng.random()
        gaps = rng.uniform(0.03, 0.03 + spread, size - 1) * hg
        xs = np.concatenate([[0.0], np.cumsum(gaps)])
        xs -= xs.mean()
        ext = (float(xs.min()) + min(f.extent[0] for f in figs),
               min(f.extent[1] for f in figs),
               float(xs.max()) + max(f.extent[2] for f in figs),
               max(f.extent[3] for f in figs))
        gx = rng.uniform(*_centre_range(ext[0], ext[2], w))
        gy = rng.uniform(*_centre_range(ext[1], ext[3], h))
        if rng.random() < cfg.out_of_frame:
            side, v = _off_frame(rng, ext, w, h, most=0.4)
            gx, gy = (v, gy) if side in ("left", "right") else (gx, v)
        for f, x, d in zip(figs, xs, near, strict=True):
            px, py = gx + x + rng.normal(0, 0.02) * hg, gy + d * 0.06 * hg
            placed.append((f, px, py))
            boxes.append((px + f.extent[0], py + f.extent[1], px + f.extent[2], py + f.extent[3]))
    for _ in range(n_alone):
        f = sample_figure(rng, _height(rng, cfg))
        best: tuple[float, float, float] | None = None
        for _try in range(8):
            px = rng.uniform(*_centre_range(f.extent[0], f.extent[2], w))
            py = rng.uniform(*_centre_range(f.extent[1], f.extent[3], h))
            if rng.random() < cfg.out_of_frame:
                side, v = _off_frame(rng, f.extent, w, h)
                px, py = (v, py) if side in ("left", "right") else (px, v)
            ov = _overlap((px + f.extent[0], py + f.extent[1], px + f.extent[2],
                           py + f.extent[3]), boxes)
            if best is None or ov < best[0]:
                best = (ov, px, py)
            if ov < 0.05:
                break
        assert best is not None
        placed.append((f, best[1], best[2]))
        boxes.append((best[1] + f.extent[0], best[2] + f.extent[1], best[1] + f.extent[2],
                      best[2] + f.extent[3]))
    order = sorted(range(len(placed)), key=lambda i: (placed[i][2] + placed[i][0].extent[3], i))
    return [placed[i] for i in order]


# --------------------------------------------------------------------------- annotations


def _annotation(fig: Figure, px: float, py: float, drawn: _Drawn, owner: np.ndarray,
                k: int, cfg: SyntheticConfig) -> dict | None:
    """COCO annotation of person ``k`` (visible mask from the owner map) or None if too small."""
    vis = owner == k
    area = int(vis.sum())
    if area < cfg.min_area:
        return None
    hh, ww = owner.shape
    kpts: list[float] = []
    for j in range(17):
        x, y = round(float(fig.joints[j, 0] + px), 2), round(float(fig.joints[j, 1] + py), 2)
        if not fig.labeled[j] or not (0 <= x <= ww - 1 and 0 <= y <= hh - 1):
            kpts += [0, 0, 0]
            continue
        cx, cy = math.floor(x + 0.5), math.floor(y + 0.5)
        lx, ly = cx - drawn.x0, cy - drawn.y0
        own = 0
        if 0 <= ly < drawn.label.shape[0] and 0 <= lx < drawn.label.shape[1]:
            own = int(drawn.label[ly, lx])
        visible = owner[cy, cx] == k and OWNS[j, own]
        kpts += [x, y, 2 if visible else 1]
    num = sum(1 for v in kpts[2::3] if v > 0)
    if num == 0 and area < cfg.min_area_unlabeled:
        return None
    rle = mask_utils.encode(np.asfortranarray(vis.astype(np.uint8)))
    bbox = [float(v) for v in mask_utils.toBbox(rle)]
    return {
        "category_id": 1,
        "bbox": bbox,
        "area": float(area),
        "segmentation": {"size": [hh, ww], "counts": rle["counts"].decode("utf-8")},
        "keypoints": kpts,
        "num_keypoints": num,
        "iscrowd": 0,
    }


def generate_image(rng: np.random.Generator, cfg: SyntheticConfig) -> tuple[np.ndarray, list[dict]]:
    """BGR uint8 image (H, W, 3) and its person annotations (without id / image_id)."""
    canvas = _background(rng, cfg)
    owner = np.full((cfg.image_height, cfg.image_width), -1, np.int16)
    layout = _layout(rng, cfg)
    drawn = [_render(canvas, owner, f, px, py, k, rng, cfg.look == "textured")
             for k, (f, px, py) in enumerate(layout)]
    anns = []
    for k, ((f, px, py), d) in enumerate(zip(layout, drawn, strict=True)):
        if d is not None:
            ann = _annotation(f, px, py, d, owner, k, cfg)
            if ann is not None:
                anns.append(ann)
    if cfg.blur_sigma > 0:
        canvas = cv2.GaussianBlur(canvas, (0, 0), cfg.blur_sigma * rng.uniform(0.6, 1.4))
    if cfg.noise_std > 0 and cfg.look == "textured":  # zero-mean: sum of two uniform bytes
        pair = np.frombuffer(rng.bytes(2 * canvas.size), np.uint8).reshape(2, *canvas.shape)
        noise = cv2.add(pair[0], pair[1], dtype=cv2.CV_16S)
        gain = cfg.noise_std * rng.uniform(0.5, 1.5) / _PAIR_STD
        canvas = cv2.addWeighted(canvas, 1.0, noise, gain, -255.0 * gain, dtype=cv2.CV_8U)
    return canvas, anns


def generate_split(root: Path, split: str, num_images: int, seed: int, cfg: SyntheticConfig,
                   progress: bool = True) -> dict:
    """Write images under root/images/<split>/ and return the COCO dict (caller writes the JSON).

    Image ``i`` (id ``i + 1``) depends only on (seed, split, i), so any image can be rebuilt
    alone and the same arguments give byte-identical files."""
    root = Path(root)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    code = zlib.crc32(split.encode("utf-8"))
    images: list[dict] = []
    annotations: list[dict] = []
    for i in tqdm(range(num_images), desc=f"synthetic {split}", unit="img", disable=not progress):
        image, persons = generate_image(np.random.default_rng([seed, code, i]), cfg)
        image_id = i + 1
        name = f"{split}/{image_id:06d}.jpg"
        path = root / "images" / name
        if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality]):
            raise DataError(f"{path}: could not write the image")
        images.append({"id": image_id, "file_name": name, "width": cfg.image_width,
                       "height": cfg.image_height, "crowdIndex": round(crowd_index(persons), 6)})
        for ann in persons:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
    return {
        "info": {"description": "hintpose synthetic crowded people", "split": split,
                 "seed": seed, "config": asdict(cfg)},
        "images": images,
        "annotations": annotations,
        "categories": [person_category()],
    }
