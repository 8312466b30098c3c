"""Synthetic crowded people in COCO keypoint format, deterministic from a seed.

A person is the orthographic projection of a simple 3D body: a pelvis root, sampled bone
lengths, shoulder/elbow/hip/knee angles in human ranges, a yaw that sets the facing (front,
back, left or right profile; "left" = the person's left side towards the camera) and an
in-plane lean. Body parts are drawn far to near (hintpose.data.render) into a per-person
label map; persons are composited back to front (painter's order) into an owner map, which
gives each person's visible mask and each joint's visibility: v=2 visible, v=1 labeled but
hidden (by a nearer person or by the person's own nearer limbs), v=0 unlabeled (face points
turned away) or outside the image (then x=y=0, as in COCO).

The same parameters give the same bits (pixels, JPEG files, annotations) on every x86-64 CPU:
no value comes from a CPU-dispatched library routine (numpy's SIMD loops, OpenBLAS, libm,
OpenCV's resize and arithmetic, see hintpose.data.portable); OpenCV only draws on integer
coordinates and encodes the JPEG files (both exact). tests/test_synthetic.py checks it.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from hintpose.data.crowd import crowd_index
from hintpose.data.figures import OWNS, Figure, sample_figure
from hintpose.data.keypoints import person_category
from hintpose.data.params import SyntheticConfig
from hintpose.data.portable import exp, gaussian_blur, log, normal
from hintpose.data.render import Drawn, background, render
from hintpose.errors import DataError

# Grouping (tuned so the default val split populates all three CrowdPose levels): in a grouped
# image a person stays alone with probability _ALONE * (1 - crowding); neighbours in a group
# stand U(0.03, 0.03 + spread) heights apart, spread = _SPREAD0 + _SPREAD1 * (1 - crowding) * U.
_ALONE, _SPREAD0, _SPREAD1 = 1.2, 0.25, 0.5
_PAIR_STD = math.sqrt(2 * (256**2 - 1) / 12)  # std of the sum of two uniform bytes


# --------------------------------------------------------------------------- layout


def _height(rng: np.random.Generator, cfg: SyntheticConfig) -> float:
    lo, hi = log(cfg.person_height_min), log(cfg.person_height_max)
    return cfg.image_height * exp(rng.uniform(lo, hi))


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
            px, py = gx + x + normal(rng, 0, 0.02) * hg, gy + d * 0.06 * hg
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


def _annotation(fig: Figure, px: float, py: float, drawn: Drawn, owner: np.ndarray,
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
    canvas = background(rng, cfg)
    owner = np.full((cfg.image_height, cfg.image_width), -1, np.int16)
    layout = _layout(rng, cfg)
    drawn = [render(canvas, owner, f, px, py, k, rng, cfg.look == "textured")
             for k, (f, px, py) in enumerate(layout)]
    anns = []
    for k, ((f, px, py), d) in enumerate(zip(layout, drawn, strict=True)):
        if d is not None:
            ann = _annotation(f, px, py, d, owner, k, cfg)
            if ann is not None:
                anns.append(ann)
    if cfg.blur_sigma > 0:
        canvas = gaussian_blur(canvas, cfg.blur_sigma * rng.uniform(0.6, 1.4))
    if cfg.noise_std > 0 and cfg.look == "textured":  # zero-mean: sum of two uniform bytes
        pair = np.frombuffer(rng.bytes(2 * canvas.size), np.uint8).reshape(2, *canvas.shape)
        noise = pair[0].astype(np.int16) + pair[1]
        gain = cfg.noise_std * rng.uniform(0.5, 1.5) / _PAIR_STD
        canvas = np.clip(np.rint(canvas + noise * gain - 255.0 * gain), 0, 255).astype(np.uint8)
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
