"""PoseFix's training on GT poses with synthesized errors (hintpose.posefix.synthesis), through
the engine, and its model files.

PoseFix's recipe, sized by ``posefix.train``: Adam, step decay of the lr at fractions
``lr_steps``, loss = heatmap cross-entropy + ``coord_weight`` x soft-argmax L1
(``hintpose.models.posefix.posefix_loss``); input poses and augmentation come from (seed,
epoch, index) streams. With ``posefix.backbone: hrnet`` the refiner is the pretrained HRNet
(``HRNetStart``) trained with HRNet's heatmap MSE (``heatmap_loss``) instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from hintpose.config import PosefixParams
from hintpose.data.coco import CocoPersons
from hintpose.engine import Schedule, Task, TrainResult, fit
from hintpose.errors import ConfigError, DataError
from hintpose.models.posefix import PoseFixHRNet, build_posefix, heatmap_loss, posefix_loss
from hintpose.posefix.synthesis import NETWORK_KEYS, PosefixTrainSet, posefix_people
from hintpose.runtime import Runtime, worker_init

#: Seed of the validation input poses: the same for every run, so validation losses compare.
VAL_SEED = 0


@dataclass(frozen=True)
class HRNetStart:
    """What the ``hrnet`` refiner starts from: the pretrain stage's HRNet weights, their
    architecture (``pose`` width, modules, blocks) and the pose models' heatmap sigma at a
    64-high heatmap (``pose.data.sigma``)."""

    weights: Path
    width: int
    modules: tuple[int, ...]
    blocks: int
    sigma_at_64: float


def model_config(params: PosefixParams, coco: CocoPersons, hrnet: HRNetStart | None = None
                 ) -> dict[str, Any]:
    """What refinement needs to rebuild the network and prepare its inputs (``model.json``);
    with ``hrnet`` also the HRNet's architecture and its heatmap sigma (map pixels)."""
    config = {**{k: getattr(params, k) for k in (*NETWORK_KEYS, "seed")},
              "num_joints": coco.num_joints,
              "keypoint_names": list(coco.category["keypoints"])}
    if params.backbone == "hrnet":
        if hrnet is None:
            raise ConfigError("posefix.backbone hrnet needs the pretrained HRNet (--init)")
        config["hrnet"] = {"width": hrnet.width, "modules": list(hrnet.modules),
                           "blocks": hrnet.blocks}
        config["sigma"] = hrnet.sigma_at_64 * (params.input_height // 4) / 64.0
    return config


def _load_hrnet(net: PoseFixHRNet, path: Path) -> None:
    """The pretrain stage's HRNet into the refiner; a missing or mismatched file is a
    ConfigError naming it."""
    if not path.is_file():
        raise ConfigError(f"{path}: HRNet checkpoint not found (run the pretrain stage)")
    try:
        net.load_backbone(path)
    except Exception as exc:  # shape/key mismatch or an unreadable file
        msg = str(exc).strip() or type(exc).__name__
        raise ConfigError((msg if str(path) in msg else f"{path}: {msg}")[:600]) from None


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


def _loss(net: torch.nn.Module, batch: Sequence[torch.Tensor], rt: Runtime, coord_weight: float,
          sigma: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss and its logged parts: cross-entropy and soft-argmax L1 (PoseFix), or for
    PoseFixHRNet the heatmap MSE and the argmax distance (``l1``, map pixels)."""
    image, maps, target, valid = (t.to(rt.device) for t in batch[:4])
    with rt.autocast():
        out = net(image.contiguous(memory_format=rt.memory_format),
                  maps.contiguous(memory_format=rt.memory_format))
    if isinstance(net, PoseFixHRNet):
        loss, dist = heatmap_loss(out.float(), target, valid, sigma)
        return loss, {"l1": dist}
    loss, ce, l1 = posefix_loss(out.float(), target, valid, coord_weight)
    return loss, {"ce": ce, "l1": l1}


class PosefixTask(Task):
    """Persons with synthesized input poses in a seeded order per epoch; loss, CE and L1."""

    name = "posefix"

    def __init__(self, train_set: PosefixTrainSet, val_set: PosefixTrainSet | None,
                 params: PosefixParams, rt: Runtime, progress: bool, sigma: float = 0.0) -> None:
        self.train_set, self.val_set, self.params, self.rt = train_set, val_set, params, rt
        self.progress, self.sigma = progress, sigma

    def batches(self, epoch: int) -> DataLoader:
        self.train_set.set_epoch(epoch)
        order = np.random.default_rng([self.params.seed, epoch]).permutation(len(self.train_set))
        tp = self.params.train
        return _loader(self.train_set, order, tp.batch_size, tp.workers)

    def losses(self, net: torch.nn.Module, batch: Sequence[torch.Tensor]
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, parts = _loss(net, batch, self.rt, self.params.train.coord_weight, self.sigma)
        return loss, {"train_loss": loss, **{f"train_{k}": v for k, v in parts.items()}}

    @torch.no_grad()
    def validate(self, net: torch.nn.Module) -> dict[str, float]:
        """Mean loss and coordinate error (``val_l1``, output-map pixels) on fixed synthesized
        val inputs."""
        if self.val_set is None:
            return {"val_loss": math.nan, "val_l1": math.nan}
        net.eval()
        total, l1_total, count = 0.0, 0.0, 0
        loader = _loader(self.val_set, range(len(self.val_set)), self.params.train.batch_size, 0)
        for batch in tqdm(loader, desc="val", leave=False, disable=not self.progress):
            loss, parts = _loss(net, batch, self.rt, self.params.train.coord_weight, self.sigma)
            n = batch[0].shape[0]
            total, count = total + loss.item() * n, count + n
            l1_total += parts["l1"].item() * n
        return {"val_loss": total / max(count, 1), "val_l1": l1_total / max(count, 1)}


def train_posefix(train_coco: CocoPersons, val_coco: CocoPersons | None,
                  params: PosefixParams, rt: Runtime, checkpoint: Path | None = None, *,
                  hrnet: HRNetStart | None = None, progress: bool = True,
                  on_epoch_end: Any = None) -> TrainResult:
    """Train PoseFix on the GT persons of ``train_coco`` (see the module docstring) through
    the engine; resumable from ``checkpoint``. ``hrnet``: the start of the ``hrnet``
    backbone (needed by it, ignored by ``resnet``)."""
    tp = params.train
    people = posefix_people(train_coco)
    if not people:
        raise DataError(f"{train_coco.annotation_file}: no trainable persons for PoseFix")
    if 0 < tp.max_samples < len(people):
        keep = np.sort(np.random.default_rng(params.seed).choice(len(people), tp.max_samples,
                                                                 replace=False))
        people = [people[i] for i in keep]
    config = model_config(params, train_coco, hrnet)
    fingerprint = {**config, "train": dataclasses.asdict(tp), "people": _people_digest(people)}
    torch.manual_seed(params.seed)
    net = build_posefix(config)
    if isinstance(net, PoseFixHRNet) and hrnet is not None:
        _load_hrnet(net, hrnet.weights)
        fingerprint["init"] = hrnet.weights.name
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
    task = PosefixTask(train_set, val_set, params, rt, progress, config.get("sigma", 0.0))
    fitted = fit(net, task, Schedule(tp.epochs, tp.lr, tp.lr_steps, tp.lr_factor), rt.device,
                 checkpoint, fingerprint, progress=progress, on_epoch_end=on_epoch_end)
    return TrainResult(net, config, fitted.log, fitted.resumed_epochs)
