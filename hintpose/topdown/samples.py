"""Top-down samples: person box -> crop -> network input, with HRNet's augmentation.

Crops are described by a center and a size in image pixels (the region warped to the
network input; see hintpose.data.transforms). ``TopDownDataset`` yields :class:`Sample`
mappings (the keys below) for training and for inference on given boxes and instance cues; a
paired training item (a schedule's ``paired_cues``) is a tuple of two of them, and
:func:`collate` stacks both kinds into a batch with the same keys.
Randomness per sample comes from (seed, epoch, index), so results do not depend on the number
of loader workers and a resumed run sees the same samples.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from hintpose.config import PoseDataParams
from hintpose.data.coco import CocoPersons, read_image
from hintpose.data.crowd import box_iou
from hintpose.data.transforms import (
    affine_matrix,
    box_to_center_size,
    flip_keypoints,
    flip_pairs_from_names,
    half_body_crop,
    image_tensor,
    transform_points,
    upper_body_mask,
)
from hintpose.topdown.codec import HeatmapCodec
from hintpose.topdown.conditioning import Conditioning, conditioning
from hintpose.topdown.feedback import mirror_twins

#: Another person's box frames a training crop (``other_box_prob``) when it overlaps the
#: target's box at least this much and holds at least this many of its labeled joints.
OTHER_BOX_MIN_IOU = 0.1
OTHER_BOX_MIN_JOINTS = 4
#: Paired cue training (``paired_cues``, MIPNet's rule): the neighbour is the target of the
#: second sample only with more than this many of its visible joints inside the crop.
PAIR_MIN_JOINTS = 3


class Sample(TypedDict, total=False):
    """One network input and its training targets (``cue`` only for a model with a cue input).

    - ``image``: the normalised RGB crop (3, H, W) float32;
    - ``target``: heatmap targets (J, h, w), or (hops, J, h, w) with coarse-to-fine hops;
    - ``target_weight``: (J, 1), 0 for joints without a target;
    - ``cue``: the rendered cue (C, H, W) (hintpose.topdown.conditioning);
    - ``feedback``: a recurrent model's corruption of its fed-back heatmaps in training
      (J, 3): per joint a kind (hintpose.topdown.feedback) and a shift (dx, dy), heatmap px;
    - ``meta``: ``index``, ``image_id``, ``score``, crop ``center`` and ``size`` (image
      pixels), ``rotation``, ``flip`` and (with a cue) ``cue``, its point in input pixels.
    """

    image: torch.Tensor
    target: torch.Tensor
    target_weight: torch.Tensor
    cue: torch.Tensor
    feedback: torch.Tensor
    meta: dict[str, Any]


#: The keys :func:`collate` stacks into a training batch.
BATCH_KEYS = ("image", "target", "target_weight", "cue", "feedback")


def collate(items: Sequence[Sample | tuple[Sample, ...]]) -> dict[str, torch.Tensor]:
    """A training batch: every key of BATCH_KEYS the samples have, stacked; a paired item
    (a tuple of samples) contributes each of its samples, so B pairs give 2B rows. The meta
    dicts are left out (training does not need them)."""
    flat = [s for it in items for s in (it if isinstance(it, tuple) else (it,))]
    return {k: torch.stack([s[k] for s in flat]) for k in BATCH_KEYS if k in flat[0]}


@dataclass(frozen=True)
class Instance:
    """One network input: a person box in an image, optionally its GT keypoints (training,
    GT-box evaluation) and an instance cue (x, y) in image pixels (inference)."""

    image_id: int
    bbox: tuple[float, float, float, float]
    score: float = 1.0
    keypoints: np.ndarray | None = None
    cue: tuple[float, float] | None = None


def overlapping_boxes(coco: CocoPersons, instances: Sequence[Instance],
                      min_iou: float = OTHER_BOX_MIN_IOU) -> list[list[tuple[float, ...]]]:
    """Per instance, the boxes (``clean_bbox``) of the other trainable persons of its image
    that overlap its box with IoU >= ``min_iou``, most overlapping first."""
    by_image: dict[int, list[tuple[float, ...]]] = defaultdict(list)
    for ann in coco.training_persons():
        by_image[ann["image_id"]].append(tuple(ann["clean_bbox"]))
    out = []
    for inst in instances:
        boxes = [b for b in by_image[inst.image_id] if b != tuple(inst.bbox)]
        iou = box_iou(inst.bbox, boxes) if boxes else np.zeros(0)
        order = np.argsort(-iou, kind="stable")
        out.append([boxes[i] for i in order if iou[i] >= min_iou])
    return out


def nearest_neighbours(coco: CocoPersons,
                       instances: Sequence[Instance]) -> list[np.ndarray | None]:
    """Per instance, the keypoints (K, 3) of the other trainable person of its image whose box
    centre is nearest to the instance's box centre (MIPNet's neighbour), or None when the
    image has no other person."""
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for ann in coco.training_persons():
        by_image[ann["image_id"]].append(ann)

    def centre(b: Sequence[float]) -> np.ndarray:
        return np.array([b[0] + b[2] / 2, b[1] + b[3] / 2])

    out: list[np.ndarray | None] = []
    for inst in instances:
        others = [a for a in by_image[inst.image_id] if tuple(a["clean_bbox"]) != tuple(inst.bbox)]
        if not others:
            out.append(None)
            continue
        dist = [float(np.linalg.norm(centre(a["clean_bbox"]) - centre(inst.bbox))) for a in others]
        best = others[int(np.argmin(dist))]
        out.append(np.asarray(best["keypoints"], np.float64).reshape(-1, 3))
    return out


def training_instances(coco: CocoPersons) -> list[Instance]:
    """One instance per trainable GT person (see ``CocoPersons.training_persons``)."""
    return [
        Instance(a["image_id"], tuple(a["clean_bbox"]), 1.0,
                 np.asarray(a["keypoints"], np.float64).reshape(-1, 3))
        for a in coco.training_persons()
    ]


def center_offset(rng: np.random.Generator, std: np.ndarray) -> np.ndarray:
    """A training crop's centre offset in box widths and heights: N(0, std), clipped at 2 std
    (``center_jitter``)."""
    return np.clip(rng.standard_normal(2), -2, 2) * std


def scale_draw(rng: np.random.Generator, factor: float) -> float:
    """A training crop's size factor: N(1, factor), clipped to 1 +- factor (HRNet's)."""
    return float(np.clip(rng.standard_normal() * factor + 1, 1 - factor, 1 + factor))


class TopDownDataset(Dataset):
    """Crops of ``instances`` warped to the input size, with targets and (for a model whose
    ``cue`` type takes an input, hintpose.topdown.conditioning) the rendered cue.

    In training mode a sample is augmented as HRNet (scale, rotation, flip, half body) and
    its cue is drawn by the cue type (the report's: a labeled joint of the target, jittered);
    otherwise the crop is the padded box and the cue is the instance's given point (or the
    box center). For a cue type with crowd training (``uses_crowd_training``), a training
    crop is framed with probability ``params.other_box_prob`` by an overlapping person's box
    instead of the target's own (see :func:`overlapping_boxes`, ``OTHER_BOX_MIN_JOINTS``):
    the target, and so the cue, stay the same, so the network learns to estimate the person
    the cue marks, not the one the box centers. With ``paired`` (a schedule's ``paired_cues``)
    every training item is a pair of samples of the same crop (same pixels, same augmentation), as
    MIPNet trains: cued on the target (target: the target) and cued on its nearest neighbour
    (:func:`nearest_neighbours`; target: the neighbour, its joints outside the crop weighted
    0), or, when no more than PAIR_MIN_JOINTS of the neighbour's visible joints lie in the
    crop, on the target again with a fresh cue. The same pixels must then give two different
    poses, so the cue cannot be ignored (``pair_prob`` < 1: the neighbour only that often;
    ``neighbour_weight``: its joints' loss weight). A paired item is a tuple of the two
    samples. At inference a detection box holding several people gets one cue per person.
    ``center_jitter`` (the schedule's: std in box widths and heights, clipped at 2 std) moves
    training crops off the box centre as a detector's boxes are, and
    a recurrent model's samples (``hops`` > 1) carry the corruption of its fed-back heatmaps
    (``feedback_corrupt``; applied by hintpose.topdown.feedback).
    """

    def __init__(self, coco: CocoPersons, instances: Sequence[Instance], params: PoseDataParams,
                 train: bool, seed: int = 0, cue: Conditioning | str = "none",
                 hops: int = 1, center_jitter: tuple[float, float] = (0.0, 0.0),
                 paired: bool = False) -> None:
        self.coco = coco
        self.instances = list(instances)
        self.params = params
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.center_jitter = np.asarray(center_jitter if train else (0.0, 0.0), np.float64)
        self.cue = conditioning(cue) if isinstance(cue, str) else cue
        self.input_size = (params.input_width, params.input_height)
        self.aspect = params.input_width / params.input_height
        self.codec = HeatmapCodec.for_input(params.input_width, params.input_height, params.sigma,
                                            target=params.target)
        #: Coarse-to-fine training targets of a recurrent model (``hop_sigma_scales``): one
        #: codec per hop; the targets then have a hop axis (hops, J, h, w).
        self.hop_codecs = [
            HeatmapCodec.for_input(params.input_width, params.input_height, params.sigma * f,
                                   target=params.target)
            for f in params.hop_sigma_scales] if train and hops > 1 else []
        names = coco.category["keypoints"]
        self.flip_pairs = flip_pairs_from_names(names)
        #: Fed-back heatmaps corrupted in training (``feedback_corrupt``): each joint's
        #: mirror twin (itself when it has none), the joints an inversion may take.
        self.corrupt = params.feedback_corrupt if train and hops > 1 else 0.0
        self.twins = np.asarray(mirror_twins(names))
        self.upper = upper_body_mask(names)
        crowd = train and self.cue.uses_crowd_training
        self.other_boxes: list[list[tuple[float, ...]]] | None = None
        if crowd and params.other_box_prob > 0:
            self.other_boxes = overlapping_boxes(coco, self.instances)
        self.neighbours: list[np.ndarray | None] | None = None
        if crowd and paired:
            self.neighbours = nearest_neighbours(coco, self.instances)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of an epoch (each epoch sees new ones)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.instances)

    def _augment(self, rng: np.random.Generator, kpts: np.ndarray, center: np.ndarray,
                 size: np.ndarray, width: int,
                 box: Sequence[float]) -> tuple[np.ndarray, np.ndarray, float, bool]:
        p = self.params
        if self.center_jitter.any():  # a detector's centre error, in box widths and heights
            center = center + center_offset(rng, self.center_jitter) * np.asarray(box[2:4],
                                                                                 np.float64)
        if (int((kpts[:, 2] > 0).sum()) > p.half_body_min_joints
                and rng.random() < p.half_body_prob):
            half = half_body_crop(kpts, self.upper, self.aspect, rng)
            if half is not None:
                center, size = half
        size = size * scale_draw(rng, p.scale_factor)
        rot = 0.0
        if rng.random() <= p.rotation_prob:
            rf = p.rotation_factor
            rot = float(np.clip(rng.standard_normal() * rf, -2 * rf, 2 * rf))
        flip = p.flip and rng.random() <= 0.5
        if flip:
            center = np.array([width - center[0] - 1, center[1]])
        return center, size, rot, flip

    def __getitem__(self, index: int) -> Sample | tuple[Sample, Sample]:
        inst = self.instances[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image = read_image(self.coco.image_path(inst.image_id))
        height, width = image.shape[:2]
        num_joints = self.coco.num_joints
        kpts = inst.keypoints if inst.keypoints is not None else np.zeros((num_joints, 3))
        center, size = self._frame(rng, index, kpts)
        rot, flip = 0.0, False
        if self.train:
            center, size, rot, flip = self._augment(rng, kpts, center, size, width,
                                                    inst.bbox)
        if flip:
            image = image[:, ::-1]
            kpts = flip_keypoints(kpts, width, self.flip_pairs)
        m = affine_matrix(center, size, rot, self.input_size)
        crop = cv2.warpAffine(np.ascontiguousarray(image), m, self.input_size,
                              flags=cv2.INTER_LINEAR)
        joints = transform_points(kpts[:, :2], m)
        target, weight = self._encode(joints, kpts[:, 2] > 0)
        meta = {
            "index": index, "image_id": inst.image_id, "score": float(inst.score),
            "center": center.astype(np.float32), "size": size.astype(np.float32),
            "rotation": rot, "flip": flip,
        }
        sample: Sample = {"image": image_tensor(crop), "target": torch.from_numpy(target),
                          "target_weight": torch.from_numpy(weight), "meta": meta}
        self._add_cue(sample, self._cue_point(rng, inst, joints, weight, m))
        self._add_feedback(rng, sample)
        if self.neighbours is None:
            return sample
        return sample, self._pair(rng, index, inst, joints, weight, m, flip, width, sample)

    def _add_cue(self, sample: Sample, point: np.ndarray | None) -> None:
        """Render the cue at ``point`` (input pixels) into ``sample`` (no cue: nothing)."""
        cue = self.cue.render(point, self.input_size, self.params.cue_sigma)
        if cue is not None and point is not None:
            sample["cue"] = torch.from_numpy(cue)
            sample["meta"]["cue"] = point.astype(np.float32)

    def _add_feedback(self, rng: np.random.Generator, sample: Sample) -> None:
        """Draw which fed-back joints a training sample's later hops see corrupted (kind
        1: moved by a shift of ``feedback_shift`` pixels in a random direction; 2: replaced
        by the mirror twin's heatmap, for joints with one); nothing without corruption."""
        if not self.corrupt:
            return
        n = len(self.twins)
        hit = rng.random(n) < self.corrupt
        kind = np.where(rng.random(n) < 0.5, 1, 2)
        kind[(kind == 2) & (self.twins == np.arange(n))] = 1
        low, high = self.params.feedback_shift
        radius, angle = rng.uniform(low, high, n), rng.uniform(0, 2 * np.pi, n)
        plan = np.stack([np.where(hit, kind, 0), radius * np.cos(angle),
                         radius * np.sin(angle)], 1)
        sample["feedback"] = torch.from_numpy(plan.astype(np.float32))

    def _pair(self, rng: np.random.Generator, index: int, inst: Instance, joints: np.ndarray,
              weight: np.ndarray, m: np.ndarray, flip: bool, width: int,
              first: Sample) -> Sample:
        """The second sample of a paired item: the same crop with the target, weight and cue
        of the neighbour (or of the target again; see the class docstring)."""
        assert self.neighbours is not None
        other = self.neighbours[index]
        pts, vis = joints, weight[:, 0] > 0
        if other is not None:
            if flip:
                other = flip_keypoints(other, width, self.flip_pairs)
            w, h = self.input_size
            moved = transform_points(other[:, :2], m)
            inside = ((other[:, 2] > 0) & (moved[:, 0] >= 0) & (moved[:, 0] < w)
                      & (moved[:, 1] >= 0) & (moved[:, 1] < h))
            enough = int((inside & (other[:, 2] == 2)).sum()) > PAIR_MIN_JOINTS
            if enough and (self.params.pair_prob >= 1 or rng.random() < self.params.pair_prob):
                pts, vis = moved, inside
        target, weight2 = self._encode(pts, vis)
        loss_weight = weight2
        if pts is not joints and self.params.neighbour_weight != 1:
            loss_weight = weight2 * np.float32(self.params.neighbour_weight)
        second: Sample = {"image": first["image"], "target": torch.from_numpy(target),
                          "target_weight": torch.from_numpy(loss_weight),
                          "meta": dict(first["meta"])}
        self._add_cue(second, self._cue_point(rng, inst, pts, weight2, m))
        self._add_feedback(rng, second)
        return second

    def _encode(self, joints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Target (J, h, w), or (hops, J, h, w) with coarse-to-fine hops, and weight (J, 1)."""
        target, weight = self.codec.encode(joints, visible)
        if self.hop_codecs:
            target = np.stack([c.encode(joints, visible)[0] for c in self.hop_codecs])
        return target, weight

    def _frame(self, rng: np.random.Generator, index: int,
               kpts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Crop center and size before augmentation: the instance's box, or (see the class
        docstring) an overlapping person's box holding enough of the target's labeled joints."""
        inst = self.instances[index]
        own = box_to_center_size(inst.bbox, self.aspect, self.params.box_padding)
        others = self.other_boxes[index] if self.other_boxes is not None else []
        if not others or rng.random() >= self.params.other_box_prob:
            return own
        center, size = box_to_center_size(others[int(rng.integers(len(others)))], self.aspect,
                                          self.params.box_padding)
        labeled = kpts[kpts[:, 2] > 0, :2]
        inside = np.all(np.abs(labeled - center) <= size / 2, axis=1)
        return (center, size) if int(inside.sum()) >= OTHER_BOX_MIN_JOINTS else own

    def _cue_point(self, rng: np.random.Generator, inst: Instance, joints: np.ndarray,
                   weight: np.ndarray, m: np.ndarray) -> np.ndarray | None:
        """The cue's point in input pixels, drawn by the cue type (None: no cue)."""
        if self.train:
            return self.cue.train_point(rng, joints, weight, self.input_size,
                                        self.params.cue_jitter)
        return self.cue.eval_point(inst.cue, m, self.input_size)
