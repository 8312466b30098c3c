"""MultiPoseNet's bottom-up targets and samples: whole images letterboxed into the input.

Letters in shapes: P persons, J joints, [W, H] network input, [w, h] maps (the input / 4).
A whole image is letterboxed into the input by the affine transform of a top-down crop
(``hintpose.data.transforms``) whose "box" is the image, so training augmentation (scale,
rotation, flip) and the mapping of predicted peaks back to image pixels share one code path.
Heatmap pixel (i, j) sits at input pixel (stride * i, stride * j).

Targets (``BottomUpCodec.encode``): per joint the max over persons of a Gaussian (peak 1,
``sigma`` heatmap pixels, centred at the exact sub-pixel position); one more channel is the
union of the persons' masks. Joint channels carry weight 0 on persons that have no labeled
joints (crowd regions, unlabeled small persons), so the net is not taught that they have none.

Each sample's augmentation comes from a (seed, epoch, index) stream.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import DataLoader, Dataset

from hintpose.data.coco import CocoPersons, read_image
from hintpose.data.transforms import (
    affine_matrix,
    box_to_center_size,
    flip_keypoints,
    flip_pairs_from_names,
    image_tensor,
    transform_points,
)
from hintpose.errors import DataError
from hintpose.runtime import worker_init

STRIDE = 4


# --------------------------------------------------------------------------- masks and codec


def person_mask(ann: dict[str, Any], height: int, width: int) -> np.ndarray:
    """The (H, W) bool mask of an annotation: its RLE (compressed or not) or polygons, or
    its box when it has no segmentation."""
    seg = ann.get("segmentation")
    try:
        if isinstance(seg, list) and seg:
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        elif isinstance(seg, dict):
            rle = (mask_utils.frPyObjects(seg, height, width)
                   if isinstance(seg.get("counts"), list) else dict(seg))
            if isinstance(rle.get("counts"), str):
                rle["counts"] = rle["counts"].encode("ascii")
        else:
            mask = np.zeros((height, width), bool)
            x, y, w, h = ann["bbox"]
            x0, y0 = max(0, int(x)), max(0, int(y))
            mask[y0:max(y0, int(math.ceil(y + h))), x0:max(x0, int(math.ceil(x + w)))] = True
            return mask
        return mask_utils.decode(rle).astype(bool)
    except (ValueError, TypeError, KeyError, UnicodeEncodeError) as exc:
        raise DataError(f"annotation {ann.get('id')!r} (image {ann.get('image_id')!r}): "
                        f"segmentation does not decode ({exc})") from None


@dataclass(frozen=True)
class BottomUpCodec:
    """Whole-image letterbox geometry and the bottom-up targets (see the module docstring)."""

    input_size: tuple[int, int]  # (W, H)
    sigma: float  # heatmap pixels

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return self.input_size[0] // STRIDE, self.input_size[1] // STRIDE

    def frame(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Center and size (image pixels) of the region of a width x height image that fills
        the input: the image, widened or heightened to the input's aspect ratio."""
        aspect = self.input_size[0] / self.input_size[1]
        return box_to_center_size((0, 0, width, height), aspect, 1.0)

    def heatmap_matrix(self, center: np.ndarray, size: np.ndarray, rotation: float = 0.0,
                       inverse: bool = False) -> np.ndarray:
        """(2, 3) image -> heatmap pixels (or back, with ``inverse``)."""
        m = affine_matrix(center, size, rotation, self.input_size)
        m = m / STRIDE  # input pixel x sits at heatmap pixel x / stride
        return cv2.invertAffineTransform(m) if inverse else m

    def encode(self, joints: np.ndarray, use: np.ndarray, persons: np.ndarray,
               ignore: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """joints (P, J, 2) in heatmap pixels, use (P, J) bool (joints that make a peak),
        persons (h, w) float in [0, 1] (union of masks), ignore (h, w) float (unlabeled
        persons) -> target and weight, both (J + 1, h, w) float32, segmentation last."""
        w, h = self.heatmap_size
        num_joints = use.shape[1]
        target = np.zeros((num_joints + 1, h, w), np.float32)
        if len(joints):
            xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
            gx = np.exp(-((xs - joints[..., :1]) ** 2) / (2 * self.sigma**2))  # (P, J, w)
            gy = np.exp(-((ys - joints[..., 1:]) ** 2) / (2 * self.sigma**2))  # (P, J, h)
            maps = gy[..., :, None] * gx[..., None, :] * use[..., None, None]
            target[:num_joints] = maps.max(axis=0)
        target[num_joints] = persons
        weight = np.ones_like(target)
        weight[:num_joints] *= (1.0 - np.clip(ignore, 0.0, 1.0))[None]
        return target, weight


def build_codec(config: dict[str, Any]) -> BottomUpCodec:
    return BottomUpCodec((int(config["input_width"]), int(config["input_height"])),
                         float(config["sigma"]))


# --------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class Augmentation:
    """Random scale / rotation / flip of the whole image (``multiposenet.train``)."""

    scale_factor: float = 0.0
    rotation_factor: float = 0.0
    rotation_prob: float = 0.0
    flip: bool = False


class BottomUpDataset(Dataset):
    """Whole images of ``coco`` (``image_ids``) letterboxed into the input, with targets.

    Item ``(epoch, index)`` -> (image (3, H, W), target (J + 1, h, w), weight (J + 1, h, w),
    meta: index, image_id, center, size); ``targets=False`` gives empty target and weight
    (inference). Without ``augment`` the epoch does not matter and ``center``/``size`` map
    heatmap peaks back to the image (``heatmap_matrix``)."""

    def __init__(self, coco: CocoPersons, image_ids: Sequence[int], codec: BottomUpCodec,
                 visible_only: bool = True, augment: Augmentation | None = None,
                 seed: int = 0, targets: bool = True) -> None:
        self.coco, self.image_ids, self.codec = coco, list(image_ids), codec
        self.visible_only, self.augment, self.seed = visible_only, augment, seed
        self.targets = targets
        self.flip_pairs = flip_pairs_from_names(coco.category["keypoints"])

    def __len__(self) -> int:
        return len(self.image_ids)

    def _draw(self, index: int, epoch: int, center: np.ndarray,
              size: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """The augmentation of a sample: (crop size, rotation, flip)."""
        a, rng = self.augment, np.random.default_rng([self.seed, epoch, index])
        if a is None:
            return size, 0.0, False
        sf = a.scale_factor
        size = size * float(np.clip(rng.standard_normal() * sf + 1, 1 - sf, 1 + sf))
        rot = 0.0
        if rng.random() < a.rotation_prob:
            rf = a.rotation_factor
            rot = float(np.clip(rng.standard_normal() * rf, -2 * rf, 2 * rf))
        return size, rot, a.flip and bool(rng.random() < 0.5)

    def _targets(self, iid: int, height: int, width: int, flip: bool, m_in: np.ndarray,
                 m_hm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        anns = self.coco.annotations_of(iid)
        labeled = [a for a in anns if not a.get("iscrowd", 0) and a["num_keypoints"] > 0]
        kpts = np.asarray([a["keypoints"] for a in labeled], np.float64).reshape(
            -1, self.coco.num_joints, 3)
        persons = np.zeros((height, width), np.float32)
        ignore = np.zeros((height, width), np.float32)
        for a in anns:
            mask = person_mask(a, height, width)
            persons[mask] = 1.0
            if a.get("iscrowd", 0) or a["num_keypoints"] == 0:
                ignore[mask] = 1.0
        if flip:
            persons, ignore = persons[:, ::-1], ignore[:, ::-1]
            kpts = np.stack([flip_keypoints(k, width, self.flip_pairs) for k in kpts]) \
                if len(kpts) else kpts
        # Masks: warped at the input size, then area-averaged down to the maps.
        persons_hm, ignore_hm = (
            cv2.resize(cv2.warpAffine(np.ascontiguousarray(m), m_in, self.codec.input_size,
                                      flags=cv2.INTER_LINEAR), self.codec.heatmap_size,
                       interpolation=cv2.INTER_AREA)
            for m in (persons, ignore))
        use = kpts[..., 2] >= 2 if self.visible_only else kpts[..., 2] > 0
        return self.codec.encode(transform_points(kpts[..., :2], m_hm), use, persons_hm,
                                 ignore_hm)

    def __getitem__(self, key: tuple[int, int] | int) -> tuple[Any, ...]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        iid = self.image_ids[index]
        image = read_image(self.coco.image_path(iid))
        height, width = image.shape[:2]
        center, size = self.codec.frame(width, height)
        size, rot, flip = self._draw(index, epoch, center, size)
        if flip:
            image = image[:, ::-1]
        m_in = affine_matrix(center, size, rot, self.codec.input_size)
        crop = cv2.warpAffine(np.ascontiguousarray(image), m_in, self.codec.input_size,
                              flags=cv2.INTER_LINEAR)
        tensor = image_tensor(crop)
        target = weight = np.zeros(0, np.float32)
        if self.targets:
            m_hm = self.codec.heatmap_matrix(center, size, rot)
            target, weight = self._targets(iid, height, width, flip, m_in, m_hm)
        meta = {"index": index, "image_id": iid, "center": center.astype(np.float32),
                "size": size.astype(np.float32)}
        return tensor, torch.from_numpy(target), torch.from_numpy(weight), meta


def make_loader(dataset: BottomUpDataset, keys: Sequence[Any], batch_size: int,
                workers: int) -> DataLoader:
    """Batches of ``dataset`` items in the order of ``keys``."""
    return DataLoader(dataset, batch_size=batch_size, sampler=list(keys), num_workers=workers,
                      worker_init_fn=worker_init if workers > 0 else None)
