"""PoseFix's training on GT poses with synthesized errors (hintpose.posefix.synthesis), through
the engine, and its model files.

PoseFix's recipe, sized by ``posefix.train``: Adam, step decay of the lr at fractions
``lr_steps``, loss = heatmap cross-entropy + ``coord_weight`` x soft-argmax L1
(``hintpose.models.posefix.posefix_loss``); input poses and augmentation come from (seed,
epoch, index) streams.
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

from hintpose.config import PosefixParams
from hintpose.data.coco import CocoPersons
from hintpose.engine import Schedule, Task, TrainResult, fit
from hintpose.errors import DataError
from hintpose.models.posefix import PoseFix, posefix_loss
from hintpose.posefix.synthesis import NETWORK_KEYS, PosefixTrainSet, posefix_people
from hintpose.runtime import Runtime, worker_init

HEAD_LAYERS = 3
#: Seed of the validation input poses: the same for every run, so validation losses compare.
VAL_SEED = 0


def model_config(params: PosefixParams, coco: CocoPersons) -> dict[str, Any]:
    """What refinement needs to rebuild the network and prepare its inputs (``model.json``)."""
    return {**{k: getattr(params, k) for k in (*NETWORK_KEYS, "seed")},
            "head_layers": HEAD_LAYERS, "num_joints": coco.num_joints,
            "keypoint_names": list(coco.category["keypoints"])}


def _people_digest(people: Sequence[Any]) -> str:
    h = hashlib.sha256()
    for p in people:
        h.update(np.int64(p.image_id).tobytes())
        h.update(np.ascontiguousarray(p.keypoints, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def _loader(dataset: PosefixTrainSet, order: Sequence[int], batch_size: int,
            workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=list(order), num_workers=workers,
                      worker_init_fn=worker_init if workers else None)


def _loss(net: torch.nn.Module, batch: Sequence[torch.Tensor], rt: Runtime, coord_weight: float
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    image, maps, target, valid = (t.to(rt.device) for t in batch[:4])
    with rt.autocast():
        logits = net(image.contiguous(memory_format=rt.memory_format),
                     maps.contiguous(memory_format=rt.memory_format))
    return posefix_loss(logits.float(), target, valid, coord_weight)


class PosefixTask(Task):
    """Persons with synthesized input poses in a seeded order per epoch; loss, CE and L1."""

    name = "posefix"

    def __init__(self, train_set: PosefixTrainSet, val_set: PosefixTrainSet | None,
                 params: PosefixParams, rt: Runtime, progress: bool) -> None:
        self.train_set, self.val_set, self.params, self.rt = train_set, val_set, params, rt
        self.progress = progress

    def batches(self, epoch: int) -> DataLoader:
        self.train_set.set_epoch(epoch)
        order = np.random.default_rng([self.params.seed, epoch]).permutation(len(self.train_set))
        tp = self.params.train
        return _loader(self.train_set, order, tp.batch_size, tp.workers)

    def losses(self, net: torch.nn.Module, batch: Sequence[torch.Tensor]
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, ce, l1 = _loss(net, batch, self.rt, self.params.train.coord_weight)
        return loss, {"train_loss": loss, "train_ce": ce, "train_l1": l1}

    @torch.no_grad()
    def validate(self, net: torch.nn.Module) -> dict[str, float]:
        """Mean loss and coordinate L1 (output-map pixels) on fixed synthesized val inputs."""
        if self.val_set is None:
            return {"val_loss": math.nan, "val_l1": math.nan}
        net.eval()
        total, l1_total, count = 0.0, 0.0, 0
        loader = _loader(self.val_set, range(len(self.val_set)), self.params.train.batch_size, 0)
        for batch in tqdm(loader, desc="val", leave=False, disable=not self.progress):
            loss, _, l1 = _loss(net, batch, self.rt, self.params.train.coord_weight)
            n = batch[0].shape[0]
            total, l1_total, count = total + loss.item() * n, l1_total + l1.item() * n, count + n
        return {"val_loss": total / max(count, 1), "val_l1": l1_total / max(count, 1)}


def train_posefix(train_coco: CocoPersons, val_coco: CocoPersons | None,
                  params: PosefixParams, rt: Runtime, checkpoint: Path | None = None, *,
                  progress: bool = True, on_epoch_end: Any = None) -> TrainResult:
    """Train PoseFix on the GT persons of ``train_coco`` (see the module docstring) through
    the engine; resumable from ``checkpoint``."""
    tp = params.train
    people = posefix_people(train_coco)
    if not people:
        raise DataError(f"{train_coco.annotation_file}: no trainable persons for PoseFix")
    if 0 < tp.max_samples < len(people):
        keep = np.sort(np.random.default_rng(params.seed).choice(len(people), tp.max_samples,
                                                                 replace=False))
        people = [people[i] for i in keep]
    config = model_config(params, train_coco)
    fingerprint = {**config, "train": dataclasses.asdict(tp), "people": _people_digest(people)}
    torch.manual_seed(params.seed)
    net = PoseFix.from_config(config)
    net.to(device=rt.device, memory_format=rt.memory_format)
    train_set = PosefixTrainSet(train_coco, people, params, net.stride, True, params.seed)
    val_set = None
    if val_coco is not None:
        val_people = posefix_people(val_coco)
        if 0 < tp.val_samples < len(val_people):
            keep = np.sort(np.random.default_rng(VAL_SEED).choice(len(val_people),
                                                                  tp.val_samples, False))
            val_people = [val_people[i] for i in keep]
        if val_people:
            val_set = PosefixTrainSet(val_coco, val_people, params, net.stride, False, VAL_SEED)
    task = PosefixTask(train_set, val_set, params, rt, progress)
    fitted = fit(net, task, Schedule(tp.epochs, tp.lr, tp.lr_steps, tp.lr_factor), rt.device,
                 checkpoint, fingerprint, progress=progress, on_epoch_end=on_epoch_end)
    return TrainResult(net, config, fitted.log, fitted.resumed_epochs)
