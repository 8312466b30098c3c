"""MultiPoseNet's keypoint subnet: its model files and its training through the engine.

Adam with step decay on whole train images, augmented (see hintpose.bottomup.targets); the
loss is MultiPoseNet's L2 on every pyramid level and on the final maps. Everything random
comes from seeds: model init (``multiposenet.seed``), the image order of an epoch and each
sample's augmentation ((seed, epoch, index) streams).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from hintpose.bottomup.cues import cue_quality, multiposenet_cues
from hintpose.bottomup.targets import Augmentation, BottomUpDataset, build_codec, make_loader
from hintpose.config import CuesParams, MultiPoseNetParams
from hintpose.data.coco import CocoPersons
from hintpose.engine import Schedule, Task, TrainResult, fit
from hintpose.errors import ConfigError, DataError, HintPoseError
from hintpose.models.multiposenet import MultiPoseNet, multiposenet_loss
from hintpose.runtime import Runtime


def model_config(params: MultiPoseNetParams, coco: CocoPersons) -> dict[str, Any]:
    """What inference needs to rebuild the net and prepare its input (``model.json``)."""
    return {
        "depth": params.depth, "width": params.width, "fpn_channels": params.fpn_channels,
        "head_channels": params.head_channels, "num_joints": coco.num_joints,
        "input_width": params.input_width, "input_height": params.input_height,
        "sigma": params.sigma, "visible_only": params.visible_only,
        "keypoint_names": list(coco.category["keypoints"]), "seed": params.seed,
    }


def forward_maps(net: MultiPoseNet, image: torch.Tensor,
                 rt: Runtime) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Final maps and per-level maps (fp32) of a batch of images."""
    with rt.autocast():
        maps, levels = net(rt.images(image))
    return maps.float(), [lv.float() for lv in levels]


def _losses(net: MultiPoseNet, batch: Sequence[Any], rt: Runtime
            ) -> tuple[torch.Tensor, torch.Tensor]:
    target, weight = batch[1].to(rt.device), batch[2].to(rt.device)
    maps, levels = forward_maps(net, batch[0], rt)
    return multiposenet_loss(maps, levels, target, weight)


def train_image_ids(coco: CocoPersons, max_images: int, seed: int) -> list[int]:
    """Images with at least one labeled person; ``max_images`` > 0 draws that many (seeded)."""
    ids = sorted(i for i in coco.images
                 if any(not a.get("iscrowd", 0) and a["num_keypoints"] > 0
                        for a in coco.annotations_of(i)))
    if not ids:
        raise DataError(f"{coco.annotation_file}: no image with a labeled person to train on")
    if 0 < max_images < len(ids):
        keep = np.sort(np.random.default_rng(seed).choice(len(ids), max_images, replace=False))
        ids = [ids[i] for i in keep]
    return ids


class BottomUpTask(Task):
    """Whole images in a seeded order per epoch; total and final-maps losses."""

    name = "multiposenet"

    def __init__(self, train_coco: CocoPersons, val_coco: CocoPersons | None,
                 ids: Sequence[int], params: MultiPoseNetParams, config: dict[str, Any],
                 rt: Runtime) -> None:
        tp = params.train
        self.rt, self.params, self.ids, self.config = rt, params, list(ids), config
        codec = build_codec(config)
        aug = Augmentation(tp.scale_factor, tp.rotation_factor, tp.rotation_prob, tp.flip)
        self.train_ds = BottomUpDataset(train_coco, self.ids, codec, params.visible_only, aug,
                                        params.seed)
        self.val_loader: DataLoader | None = None
        self.val_coco, self.val_boxes = val_coco, []
        if val_coco is not None:
            val_ids = sorted(val_coco.images)
            val_ids = val_ids[:tp.val_images] if tp.val_images > 0 else val_ids
            val_ds = BottomUpDataset(val_coco, val_ids, codec, params.visible_only)
            self.val_loader = make_loader(val_ds, range(len(val_ds)), tp.batch_size, tp.workers)
            wanted = set(val_ids)
            self.val_boxes = [{"image_id": a["image_id"], "bbox": list(a["clean_bbox"]),
                               "score": 1.0} for a in val_coco.training_persons()
                              if a["image_id"] in wanted]

    def batches(self, epoch: int) -> DataLoader:
        order = torch.randperm(len(self.ids), generator=torch.Generator().manual_seed(
            self.params.seed * 100_003 + epoch)).tolist()
        tp = self.params.train
        return make_loader(self.train_ds, [(epoch, i) for i in order], tp.batch_size, tp.workers)

    def losses(self, net: torch.nn.Module, batch: Sequence[Any]
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total, final = _losses(net, batch, self.rt)
        return total, {"train_loss": total, "train_loss_final": final}

    @torch.no_grad()
    def validate(self, net: torch.nn.Module) -> dict[str, float]:
        """Mean total and final-maps loss over the val images (NaN when there are none), and
        the learning curve's figure: the multi-person cue recall (``cue_quality``) of the
        cues this network would give the GT boxes of those images, with the default ``cues``
        settings and no flip test."""
        total = final = 0.0
        count = 0
        if self.val_loader is not None:
            net.eval()
            for batch in tqdm(self.val_loader, desc="val", leave=False):
                n = batch[0].shape[0]
                t, f = _losses(net, batch, self.rt)
                total, final, count = total + float(t) * n, final + float(f) * n, count + n
        if not count:
            return {"val_loss": math.nan, "val_loss_final": math.nan}
        row = {"val_loss": total / count, "val_loss_final": final / count}
        if self.val_coco is not None and self.val_boxes:
            cues = multiposenet_cues(net, self.config, self.val_coco, self.val_boxes,
                                     CuesParams(flip_test=False), self.rt, progress=False)
            quality = cue_quality(self.val_coco, self.val_boxes, cues)
            row["val_cue_recall"] = quality["multi_person_recall"]
        return row


def train_multiposenet(
    train_coco: CocoPersons, val_coco: CocoPersons | None, params: MultiPoseNetParams,
    rt: Runtime, checkpoint: Path | None = None, *, progress: bool = True,
    on_epoch_end: Any = None,
) -> TrainResult:
    """Train the keypoint subnet (see the module docstring) through the engine; resumable
    from ``checkpoint``."""
    tp = params.train
    ids = train_image_ids(train_coco, tp.max_images, params.seed)
    config = model_config(params, train_coco)
    digest = hashlib.sha256(np.asarray(ids, np.int64).tobytes()).hexdigest()[:16]
    fingerprint = {**config, "train": dataclasses.asdict(tp), "pretrained": params.pretrained,
                   "images": digest}
    torch.manual_seed(params.seed)
    net = MultiPoseNet.from_config(config)
    if params.pretrained:
        try:
            net.load_backbone(params.pretrained)
        except Exception as exc:
            if isinstance(exc, HintPoseError):
                raise
            raise ConfigError(f"multiposenet.pretrained: {params.pretrained} does not load into "
                              f"a ResNet-{params.depth} of width {params.width} "
                              f"({str(exc)[:300]})") from None
    if rt.channels_last and rt.device.type == "cpu" and not net.channels_last_trainable():
        print("note: runtime.channels_last is off for this narrow MultiPoseNet trunk (a PyTorch "
              "CPU bug with 1x1 stride-2 convs of under 8 channels)", flush=True)
        rt = dataclasses.replace(rt, channels_last=False)
    net.to(device=rt.device, memory_format=rt.memory_format)
    task = BottomUpTask(train_coco, val_coco, ids, params, config, rt)
    fitted = fit(net, task, Schedule(tp.epochs, tp.lr, tp.lr_steps, tp.lr_factor), rt.device,
                 checkpoint, fingerprint, progress=progress, on_epoch_end=on_epoch_end)
    return TrainResult(net, config, fitted.log, fitted.resumed_epochs)
