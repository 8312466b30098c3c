"""PoseFix's inputs: input poses synthesized from GT with typical errors, crops, pose maps.

Error synthesis follows PoseFix (Moon et al., CVPR 2019), which took the error taxonomy of
Ronchi & Perona (ICCV 2017). Every labeled joint of a GT person becomes, at random,

- good: within r(0.85) of the GT joint;  jitter: between r(0.85) and r(0.5) of it;
- inversion: within r(0.5) of the same person's left/right counterpart;
- swap: within r(0.5) of the same (or counterpart) joint of a nearby person (another GT person
  of the image whose box overlaps with IoU >= 0.1);
- miss: between r(0.5) and r(0.1) of the GT joint and at least r(0.5) from every candidate,

where r(ks) is the distance at which the keypoint similarity exp(-d^2 / (2 area (2 sigma)^2))
falls to ks. A good/jitter/inversion/swap point must lie nearer its own source than every other
candidate. Probabilities per joint group and number of labeled joints are PoseFix's
(``type_probabilities``), or, with ``posefix.error_mix`` (beyond PoseFix), one row per joint
group measured on a pipeline's own predictions (hintpose.posefix.analysis.error_mix); a type
that cannot be drawn (no counterpart, no nearby joint, no
point found in ``TRIES`` draws) gets probability 0 and the rest are renormalised. Unlabeled GT
joints, for which PoseFix used another model's estimate, are placed uniformly in the person's
box (they carry no loss).

Crops are as PoseFix at test time, in training too: the input pose's extent x box_extent (at
least min_box pixels), the input's aspect ratio, x box_padding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from hintpose.config import ERROR_MIX_GROUPS, PosefixParams
from hintpose.data.coco import CocoPersons, read_image
from hintpose.data.crowd import box_iou
from hintpose.data.transforms import (
    affine_matrix,
    box_to_center_size,
    flip_pairs_from_names,
    image_tensor,
    transform_points,
)

#: Settings of posefix that shape the network and its inputs (stored in ``model.json``).
NETWORK_KEYS = ("backbone", "depth", "width", "head_channels", "head_layers", "input_skip",
                "input_width", "input_height", "pose_sigma", "box_extent", "min_box",
                "box_padding")

ERROR_TYPES = ("good", "jitter", "inversion", "swap", "miss")
GOOD, JITTER, INVERSION, SWAP, MISS = range(5)
#: Type of an unlabeled GT joint (no loss, placed at random in the box).
UNLABELED = -1
#: Draws of a point before its type counts as impossible for this joint.
TRIES = 20
#: Box IoU from which another person is a swap source (PoseFix: 0.1).
NEARBY_IOU = 0.1
KS_GOOD, KS_JITTER, KS_MISS = 0.85, 0.5, 0.1

#: Joint groups of ``JointGroups.body`` (the keys of ``posefix.error_mix``).
GROUP_NAMES = ERROR_MIX_GROUPS
_FACE = ("nose", "eye", "ear", "head", "neck")
_LOWER = ("hip", "knee", "ankle")


@dataclass(frozen=True)
class JointGroups:
    """Per-joint classes of PoseFix's probability tables, from the keypoint names."""

    body: np.ndarray  # (J,) 0 face, 1 upper body (shoulders, elbows, wrists), 2 lower body
    jitter: np.ndarray  # (J,) 0 nose/knees/ankles, 1 eyes/ears/upper body, 2 hips
    miss: np.ndarray  # (J,) 0 face, 1 shoulders/ankles, 2 others
    counterpart: np.ndarray  # (J,) left/right counterpart, -1 for none

    @classmethod
    def from_names(cls, names: Sequence[str]) -> JointGroups:
        def has(name: str, words: Sequence[str]) -> bool:
            return any(w in name for w in words)

        body = np.array([0 if has(n, _FACE) else 2 if has(n, _LOWER) else 1 for n in names])
        jitter = np.array([0 if has(n, ("nose", "knee", "ankle")) else 2 if "hip" in n else 1
                           for n in names])
        miss = np.array([0 if b == 0 else 1 if has(n, ("shoulder", "ankle")) else 2
                         for n, b in zip(names, body, strict=True)])
        counterpart = np.full(len(names), -1)
        for a, b in flip_pairs_from_names(names):
            counterpart[a], counterpart[b] = b, a
        return cls(body, jitter, miss, counterpart)


def mix_table(error_mix: dict[str, tuple[float, ...]]) -> np.ndarray | None:
    """``posefix.error_mix`` as a (3, 5) table of type probabilities per joint group (rows in
    GROUP_NAMES order, each normalised to 1); None when empty (PoseFix's tables)."""
    if not error_mix:
        return None
    table = np.array([error_mix[g] for g in GROUP_NAMES], dtype=np.float64)
    return table / table.sum(1, keepdims=True)


def type_probabilities(groups: JointGroups, num_valid: int, num_nearby: int,
                       mix: np.ndarray | None = None) -> np.ndarray:
    """PoseFix's probabilities (J, 5) of good, jitter, inversion, swap, miss for a person with
    ``num_valid`` labeled joints and ``num_nearby`` overlapping persons, or the fitted ``mix``
    (3, 5) row of each joint's group (mix_table), before the types that cannot be drawn for a
    joint are removed."""
    if mix is not None:
        return mix[groups.body].copy()
    jitter = np.array([0.15, 0.20, 0.25] if num_valid <= 10 else [0.10, 0.15, 0.20])
    if num_valid <= 5:
        miss = np.array([0.15, 0.20, 0.25])
    elif num_valid <= 10:
        miss = np.array([0.10, 0.13, 0.15])
    else:
        miss = np.array([0.02, 0.05, 0.10])
    inversion = np.array([0.01, 0.03, 0.06])
    crowded = (num_valid <= 10 and num_nearby >= 1) or (num_valid <= 15 and num_nearby >= 3)
    swap = np.array([0.02, 0.15, 0.10] if crowded else [0.01, 0.06, 0.03])
    p = np.zeros((len(groups.body), 5))
    p[:, JITTER] = jitter[groups.jitter]
    p[:, INVERSION] = inversion[groups.body]
    p[:, SWAP] = swap[groups.body]
    p[:, MISS] = miss[groups.miss]
    p[:, GOOD] = 1.0 - p[:, 1:].sum(1)
    return p


def ks_radius(ks: np.ndarray | float, area: float, sigma: np.ndarray | float) -> np.ndarray:
    """Distance at which keypoint similarity exp(-d^2 / (2 area (2 sigma)^2)) equals ks."""
    return 2 * np.asarray(sigma) * np.sqrt(-2.0 * area * np.log(ks))


def _around(rng: np.random.Generator, src: np.ndarray, lo: float, hi: float) -> np.ndarray:
    angle, radius = rng.random(2)
    angle *= 2 * math.pi
    radius = lo + (hi - lo) * radius
    return src + np.array([radius * math.cos(angle), radius * math.sin(angle)])


def synthesize_pose(rng: np.random.Generator, keypoints: np.ndarray, bbox: Sequence[float],
                    area: float, nearby: np.ndarray, groups: JointGroups,
                    sigmas: np.ndarray, mix: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """An input pose (J, 2) for the GT person ``keypoints`` (J, 3) with box ``bbox`` and OKS
    ``area``, given the nearby persons' keypoints ``nearby`` (M, J, 3), with the type
    probabilities of type_probabilities (``mix``: a fitted table); returns it with the error
    type of every joint (J,) (ERROR_TYPES indices, UNLABELED for unlabeled joints)."""
    kpts = np.asarray(keypoints, dtype=np.float64)
    nearby = np.asarray(nearby, dtype=np.float64).reshape(-1, *kpts.shape)
    labeled = kpts[:, 2] > 0
    probs = type_probabilities(groups, int(labeled.sum()), len(nearby), mix)
    area = max(float(area), 1.0)
    radii = ks_radius(np.array([KS_GOOD, KS_JITTER, KS_MISS])[None], area,
                      np.asarray(sigmas, dtype=np.float64)[:, None]).tolist()  # (J, 3)
    points = np.zeros((len(kpts), 2))
    types = np.full(len(kpts), UNLABELED)
    x, y, w, h = (float(v) for v in bbox)
    for j in range(len(kpts)):
        if not labeled[j]:
            points[j] = (x + rng.uniform(0, 1) * w, y + rng.uniform(0, 1) * h)
            continue
        c = groups.counterpart[j]
        gt = kpts[j, :2]
        inv = kpts[c, :2][None] if c >= 0 and labeled[c] else np.zeros((0, 2))
        joints = [j] if c < 0 else [j, c]
        swaps = np.concatenate([nearby[:, i, :2][nearby[:, i, 2] > 0] for i in joints]
                               ) if len(nearby) else np.zeros((0, 2))
        candidates = np.concatenate([gt[None], inv, swaps])
        r85, r50, r10 = radii[j]
        p = probs[j].copy()
        p[INVERSION] *= len(inv) > 0
        p[SWAP] *= len(swaps) > 0
        while True:
            cum = np.cumsum(p)
            t = min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), 4)
            point = _draw(rng, t, candidates, len(inv), r85, r50, r10)
            if point is not None:
                break
            if t == GOOD:  # nothing nearer the GT than its neighbours: the GT itself
                point = gt.copy()
                break
            p[t] = 0.0
        points[j], types[j] = point, t
    return points, types


def _draw(rng: np.random.Generator, t: int, candidates: np.ndarray, num_inv: int,
          r85: float, r50: float, r10: float) -> np.ndarray | None:
    """A point of type ``t`` (candidates: GT joint, then ``num_inv`` counterparts, then swap
    sources), or None when TRIES draws all break the type's rule."""
    if t == SWAP:
        src_index = 1 + num_inv + int(rng.integers(len(candidates) - 1 - num_inv))
    else:
        src_index = 1 if t == INVERSION else 0
    src = candidates[src_index]
    lo, hi = {GOOD: (0.0, r85), JITTER: (r85, r50), INVERSION: (0.0, r50), SWAP: (0.0, r50),
              MISS: (r50, r10)}[t]
    if len(candidates) == 1 and t != MISS:  # no other candidate: any draw is valid
        return _around(rng, src, lo, hi)
    others = candidates[np.arange(len(candidates)) != src_index]
    for _ in range(TRIES):
        point = _around(rng, src, lo, hi)
        if t == MISS:
            if (((candidates - point) ** 2).sum(1) >= r50 * r50).all():
                return point
        elif (((others - point) ** 2).sum(1) > ((src - point) ** 2).sum()).all():
            return point
    return None


# --------------------------------------------------------------------------- people, crops, maps


@dataclass(frozen=True)
class Person:
    """A GT person with what error synthesis needs: box, OKS area, the nearby persons."""

    image_id: int
    keypoints: np.ndarray  # (J, 3)
    bbox: tuple[float, float, float, float]
    area: float
    nearby: np.ndarray  # (M, J, 3)


def posefix_people(coco: CocoPersons) -> list[Person]:
    """Every trainable person of ``coco`` with the labeled persons of its image whose box
    overlaps its own with IoU >= NEARBY_IOU (swap sources)."""
    people = []
    for ann in coco.training_persons():
        others = [a for a in coco.annotations_of(ann["image_id"]) if a["id"] != ann["id"]
                  and not a.get("iscrowd", 0) and a["num_keypoints"] > 0]
        if others:
            iou = box_iou(ann["bbox"], np.array([a["bbox"] for a in others]))
            others = [a for a, v in zip(others, iou, strict=True) if v >= NEARBY_IOU]
        nearby = np.array([np.reshape(a["keypoints"], (-1, 3)) for a in others],
                          dtype=np.float64).reshape(-1, coco.num_joints, 3)
        area = float(ann.get("area") or ann["bbox"][2] * ann["bbox"][3])
        people.append(Person(ann["image_id"], np.reshape(ann["keypoints"], (-1, 3)).astype(
            np.float64), tuple(ann["clean_bbox"]), area, nearby))
    return people


def pose_crop(points: np.ndarray, params: PosefixParams) -> tuple[np.ndarray, np.ndarray]:
    """Crop center and size (image pixels) for an input pose (J, 2): its extent x box_extent,
    at least min_box on each side, at the input's aspect ratio, x box_padding."""
    lo, hi = points.min(0), points.max(0)
    center = (lo + hi) / 2
    w, h = np.maximum((hi - lo) * params.box_extent, params.min_box)
    box = (center[0] - w / 2, center[1] - h / 2, w, h)
    return box_to_center_size(box, params.input_width / params.input_height, params.box_padding)


def pose_maps(points: np.ndarray, size: tuple[int, int], sigma: float,
              valid: np.ndarray | None = None) -> np.ndarray:
    """The input pose (J, 2) in input pixels as J Gaussian maps (J, H, W), peak 1; a joint
    that is not ``valid`` gives an all-zero map."""
    w, h = size
    xs, ys = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)
    pts = np.asarray(points, dtype=np.float32)
    gx = np.exp(-((xs[None] - pts[:, :1]) ** 2) / (2 * sigma**2))
    gy = np.exp(-((ys[None] - pts[:, 1:]) ** 2) / (2 * sigma**2))
    maps = gy[:, :, None] * gx[:, None, :]
    if valid is not None:
        maps *= np.asarray(valid, dtype=np.float32)[:, None, None]
    return maps.astype(np.float32)


def input_sigma(params: PosefixParams) -> float:
    """The input-pose Gaussian sigma in input pixels (``pose_sigma`` is at a 256-high input)."""
    return params.pose_sigma * params.input_height / 256.0


class PosefixTrainSet(Dataset):
    """(image, pose maps, target (J, 2) in output-map pixels, valid (J,), error types (J,))
    per person: a synthesized input pose, its crop and PoseFix's augmentation (scale, rotation,
    flip) when ``augment``. Draws come from (seed, epoch, index)."""

    def __init__(self, coco: CocoPersons, people: Sequence[Person], params: PosefixParams,
                 stride: int, augment: bool, seed: int) -> None:
        self.coco, self.people, self.params = coco, list(people), params
        self.stride, self.augment, self.seed = stride, augment, seed
        self.epoch = 0
        names = coco.category["keypoints"]
        self.groups = JointGroups.from_names(names)
        self.mix = mix_table(params.error_mix)
        self.sigmas = coco.sigmas
        self.perm = np.arange(coco.num_joints)
        for a, b in flip_pairs_from_names(names):
            self.perm[a], self.perm[b] = b, a
        self.size = (params.input_width, params.input_height)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.people)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        person = self.people[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        points, types = synthesize_pose(rng, person.keypoints, person.bbox, person.area,
                                        person.nearby, self.groups, self.sigmas, self.mix)
        center, size = pose_crop(points, self.params)
        rot, flip = 0.0, False
        if self.augment:
            t = self.params.train
            size = size * np.clip(rng.standard_normal() * t.scale_factor + 1,
                                  1 - t.scale_factor, 1 + t.scale_factor)
            if rng.random() <= t.rotation_prob:
                rf = t.rotation_factor
                rot = float(np.clip(rng.standard_normal() * rf, -2 * rf, 2 * rf))
            flip = t.flip and rng.random() <= 0.5
        m = affine_matrix(center, size, rot, self.size)
        image = read_image(self.coco.image_path(person.image_id))
        crop = cv2.warpAffine(image, m, self.size, flags=cv2.INTER_LINEAR)
        inp = transform_points(points, m)
        gt = transform_points(person.keypoints[:, :2], m)
        valid = person.keypoints[:, 2] > 0
        if flip:
            crop = crop[:, ::-1]
            inp[:, 0] = self.size[0] - 1 - inp[:, 0]
            gt[:, 0] = self.size[0] - 1 - gt[:, 0]
            inp, gt, valid, types = inp[self.perm], gt[self.perm], valid[self.perm], \
                types[self.perm]
        maps = pose_maps(inp, self.size, input_sigma(self.params))
        return (image_tensor(crop), torch.from_numpy(maps),
                torch.from_numpy((gt / self.stride).astype(np.float32)),
                torch.from_numpy(valid.astype(np.float32)), torch.from_numpy(types))


class RefineSet(Dataset):
    """(image, pose maps, inverse crop matrix (2, 3)) per input pose (J, 3) of a results file,
    cropped as PoseFix at test time; all joints of the input are drawn."""

    def __init__(self, coco: CocoPersons, entries: Sequence[dict[str, Any]],
                 params: PosefixParams) -> None:
        self.coco, self.entries, self.params = coco, list(entries), params
        self.size = (params.input_width, params.input_height)

    def __len__(self) -> int:
        return len(self.entries)

    def crop(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        kpts = np.reshape(self.entries[index]["keypoints"], (-1, 3)).astype(np.float64)
        return pose_crop(kpts[:, :2], self.params)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        entry = self.entries[index]
        kpts = np.reshape(entry["keypoints"], (-1, 3)).astype(np.float64)
        center, size = self.crop(index)
        m = affine_matrix(center, size, 0.0, self.size)
        crop = cv2.warpAffine(read_image(self.coco.image_path(entry["image_id"])), m, self.size,
                              flags=cv2.INTER_LINEAR)
        maps = pose_maps(transform_points(kpts[:, :2], m), self.size, input_sigma(self.params))
        inverse = affine_matrix(center, size, 0.0, self.size, inverse=True)
        return (image_tensor(crop), torch.from_numpy(maps),
                torch.from_numpy(inverse.astype(np.float64)))
