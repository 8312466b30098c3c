"""The pose models' training: HRNet's COCO recipe on top-down crops, through the engine.

Recipe (official HRNet ``w32_256x192``): Adam without weight decay, step decay of the lr by
``lr_factor`` at fractions ``lr_steps`` of the schedule, JointsMSELoss with target weights,
summed over the hops of a recurrent model (``pose.data.hop_weights``: weighted; its feedback
as hintpose.topdown.feedback says); the validation loss is that of the last hop.

Everything that decides the result comes from seeds: the model init (``torch.manual_seed``),
the training subset (``max_samples``), the shuffle order (a generator seeded from (seed,
epoch), as DistributedSampler) and the augmentation (TopDownDataset's (seed, epoch, index)
streams). Under DDP (hintpose.launch or torchrun) every rank trains on its share of each epoch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from hintpose.config import PoseDataParams, PoseTrainParams
from hintpose.data.coco import CocoPersons
from hintpose.engine import Schedule, Task, TrainResult, fit, mean_over
from hintpose.errors import DataError
from hintpose.io import file_digest
from hintpose.models.hintpose import HintPose, joints_mse_loss
from hintpose.runtime import SINGLE_PROCESS, DistInfo, Runtime, worker_init
from hintpose.topdown.cue_probe import ProbeSettings, probe_row
from hintpose.topdown.feedback import FeedbackTraining
from hintpose.topdown.samples import Instance, TopDownDataset, collate, training_instances
from hintpose.topdown.spec import ModelSpec
from hintpose.topdown.val_ap import ValAP
from hintpose.topdown.weights import load_branch_init, load_pretrained_backbone

#: Seed of the validation subset and its cues: the same for every model, so that the
#: validation losses of different models compare.
VAL_SEED = 0

#: A training batch: hintpose.topdown.samples.BATCH_KEYS -> stacked tensors.
Batch = dict[str, torch.Tensor]


def select_training_instances(coco: CocoPersons, max_samples: int, seed: int) -> list[Instance]:
    """Trainable persons of ``coco``; with ``max_samples`` > 0, a subset of that many drawn
    with ``seed`` (kept in dataset order)."""
    instances = training_instances(coco)
    if not instances:
        raise DataError(f"{coco.annotation_file}: no trainable persons (need non-crowd persons "
                        "with labeled keypoints)")
    if 0 < max_samples < len(instances):
        keep = np.sort(np.random.default_rng(seed).choice(len(instances), max_samples,
                                                          replace=False))
        instances = [instances[i] for i in keep]
    return instances


def validation_instances(coco: CocoPersons, val_samples: int,
                         seed: int = VAL_SEED) -> list[Instance]:
    """Val persons for the validation loss (``val_samples`` of them drawn with ``seed``; 0:
    all), each with its instance cue on one of its labeled joints, chosen with ``seed``
    and placed exactly (no jitter). With the un-augmented crop of TopDownDataset(train=False)
    this is the training-time cue without its randomness, the same for every model."""
    instances = training_instances(coco)
    rng = np.random.default_rng(seed)
    if 0 < val_samples < len(instances):
        keep = np.sort(rng.choice(len(instances), val_samples, replace=False))
        instances = [instances[i] for i in keep]
    out = []
    for inst in instances:
        kpts = inst.keypoints if inst.keypoints is not None else np.zeros((1, 3))
        labeled = np.flatnonzero(kpts[:, 2] > 0)
        cue = None
        if len(labeled):
            j = labeled[rng.integers(len(labeled))]
            cue = (float(kpts[j, 0]), float(kpts[j, 1]))
        out.append(dataclasses.replace(inst, cue=cue))
    return out


def instances_digest(instances: Sequence[Instance]) -> str:
    """A short fingerprint of which persons (image, box) a run trains on."""
    h = hashlib.sha256()
    for inst in instances:
        h.update(np.asarray([inst.image_id, *inst.bbox], dtype=np.float64).tobytes())
        if inst.keypoints is not None:
            h.update(np.asarray(inst.keypoints, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


class _EpochSampler(Sampler[tuple[int, int]]):
    """Yields (epoch, index) so that loader workers (persistent ones too) draw the
    augmentation of the current epoch; shuffling and sharding come from a DistributedSampler
    (a generator seeded from seed + epoch; one replica in a single process)."""

    def __init__(self, base: DistributedSampler) -> None:
        self.base = base
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.base.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, i) for i in self.base)

    def __len__(self) -> int:
        return len(self.base)


class _EpochDataset(Dataset):
    """TopDownDataset addressed by (epoch, index)."""

    def __init__(self, dataset: TopDownDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


def _loader(dataset: Dataset, sampler: Sampler | range, batch_size: int, workers: int,
            device: torch.device) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=collate, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0,
                      worker_init_fn=worker_init if workers > 0 else None)


def forward_losses(net: nn.Module, batch: Batch, rt: Runtime,
                   feedback: FeedbackTraining | None = None) -> list[torch.Tensor]:
    """Per-hop JointsMSELoss (fp32) of one batch; their (weighted) sum is the training loss.
    The cue goes in when the batch has one (samples of a model with a cue input); a recurrent
    model's hops are fed as ``feedback`` says (training; None: the report's clean feedback)."""
    target = batch["target"].to(rt.device, non_blocking=True)
    weight = batch["target_weight"].to(rt.device, non_blocking=True)
    cue_in = rt.images(batch["cue"]) if "cue" in batch else None
    fed = feedback.transform(batch.get("feedback")) if feedback is not None else None
    with rt.autocast():
        outputs = net(rt.images(batch["image"]), cue_in, fed)
    per_hop = target.dim() == 5  # coarse-to-fine: (N, hops, J, h, w)
    return [joints_mse_loss([out.float()], target[:, h] if per_hop else target, weight)
            for h, out in enumerate(outputs)]


@dataclasses.dataclass(frozen=True)
class Curves:
    """What a pose model measures after every epoch, besides its losses: the GT-box AP of a
    few val images (``val_ap``) and, for cue models, the cue probe (``probe``); heatmaps pass
    through ``heatmap_file``."""

    val_ap: ValAP | None
    probe: ProbeSettings | None
    heatmap_file: Path


@dataclasses.dataclass(frozen=True)
class PoseData:
    """What a pose model trains on: the train split, the val split of its validation loss and
    learning curves (None: none), and the crop settings ``pose.data``."""

    train: CocoPersons
    val: CocoPersons | None
    params: PoseDataParams


@dataclasses.dataclass(frozen=True)
class StartedModel:
    """A network before training, with its description and the digest of the weights it
    starts from (empty: a random init)."""

    net: HintPose
    spec: ModelSpec
    init_digest: str = ""


def start_model(spec: ModelSpec, init: Path | None = None,
                branch_init: Path | None = None) -> StartedModel:
    """The network of ``spec``, seeded with ``spec.seed``: its backbone from the HRNet
    checkpoint ``init`` and its additions from zero, so it starts as that HRNet; given
    ``branch_init`` (the pretrain stage's branch of its kind,
    hintpose.topdown.pretraining.branch_for) it starts from that instead. A missing or
    mismatched file is a ConfigError naming it."""
    torch.manual_seed(spec.seed)
    net = spec.build()
    if branch_init is not None:
        load_branch_init(net, branch_init)
        init = branch_init
    elif init is not None:
        load_pretrained_backbone(net, init)
    return StartedModel(net, spec, file_digest(init) if init is not None else "")


class PoseTask(Task):
    """A pose model's crops, its per-hop loss and its last-hop validation loss."""

    name = "pose"

    def __init__(self, data: PoseData, instances: Sequence[Instance], tp: PoseTrainParams,
                 spec: ModelSpec, rt: Runtime, info: DistInfo,
                 curves: Curves | None = None) -> None:
        self.rt, self.info, self.spec, self.curves = rt, info, spec, curves
        recurrent = spec.hops > 1
        self.feedback = (FeedbackTraining.of(data.params, spec.keypoint_names)
                         if recurrent else None)
        weights = data.params.hop_weights
        #: Per-hop loss weights (None: each 1, the report's sum).
        self.hop_weights = (torch.tensor(weights, device=rt.device)
                            if recurrent and weights else None)
        self.val_coco = data.val
        self.train_ds = TopDownDataset(data.train, instances, data.params, train=True,
                                       seed=spec.seed, cue=spec.conditioning, hops=spec.hops,
                                       center_jitter=tp.center_jitter, paired=tp.paired_cues)
        self.sampler = _EpochSampler(DistributedSampler(
            range(len(instances)), num_replicas=info.world_size, rank=info.rank, shuffle=True,
            seed=spec.seed))
        self.loader = _loader(_EpochDataset(self.train_ds), self.sampler, tp.batch_size,
                              tp.workers, rt.device)
        self.val_loader = None
        if data.val is not None:
            val_inst = validation_instances(data.val, tp.val_samples)[info.rank::info.world_size]
            if val_inst or info.distributed:
                val_ds = TopDownDataset(data.val, val_inst, data.params, train=False,
                                        seed=VAL_SEED, cue=spec.conditioning)
                self.val_loader = _loader(val_ds, range(len(val_ds)), tp.batch_size, tp.workers,
                                          rt.device)

    def batches(self, epoch: int) -> DataLoader:
        self.sampler.set_epoch(epoch)
        self.train_ds.set_epoch(epoch)
        return self.loader

    def losses(self, net: nn.Module, batch: Batch) -> tuple[torch.Tensor,
                                                            dict[str, torch.Tensor]]:
        hops = forward_losses(net, batch, self.rt, self.feedback)
        stacked = torch.stack(hops)
        total = (stacked if self.hop_weights is None else stacked * self.hop_weights).sum()
        return total, {f"train_loss_hop{h + 1}": v for h, v in enumerate(hops)}

    def count(self, batch: Batch) -> int:
        return int(batch["image"].shape[0])

    def row(self, means: dict[str, float]) -> dict[str, float]:
        hops = [means[f"train_loss_hop{h + 1}"] for h in range(self.spec.hops)]
        per_hop = {f"train_loss_hop{h + 1}": v for h, v in enumerate(hops)}
        weights = self.hop_weights.tolist() if self.hop_weights is not None else [1.0] * len(hops)
        total = sum(w * v for w, v in zip(weights, hops, strict=True))
        return {"train_loss": total, **(per_hop if self.spec.hops > 1 else {})}

    @torch.no_grad()
    def validate(self, net: nn.Module) -> dict[str, float]:
        row = {"val_loss": float("nan")}
        if self.val_loader is not None:
            net.eval()
            row["val_loss"] = mean_over(
                ((float(forward_losses(net, batch, self.rt)[-1]), batch["image"].shape[0])
                 for batch in self.val_loader), self.info, self.rt.device)
        c = self.curves
        if c is not None and c.val_ap is not None:
            *earlier, row["val_AP"] = c.val_ap.per_hop(net, self.spec, self.rt, c.heatmap_file)
            row.update({f"val_AP_hop{h + 1}": ap for h, ap in enumerate(earlier)})
        if c is not None and c.probe is not None and self.val_coco is not None:
            row.update(probe_row(net, self.spec, self.val_coco, c.heatmap_file, c.probe,
                                 self.rt))
        return row


def _fingerprint(spec: ModelSpec, data: PoseDataParams, tp: PoseTrainParams, digest: str,
                 init_digest: str) -> dict[str, Any]:
    """Everything that decides the trained weights (a checkpoint resumes only when equal)."""
    return {**spec.to_json(), "data": dataclasses.asdict(data), "train": dataclasses.asdict(tp),
            "init_weights": init_digest, "instances": digest}


def _curves(model: StartedModel, data: PoseData, tp: PoseTrainParams,
            checkpoint: Path | None) -> Curves | None:
    """The learning curves of ``tp`` (val AP, the cue probe), or None when it asks for none."""
    probes = model.spec.conditioning.probe and tp.probe_pairs > 0
    if data.val is None or not (tp.val_images > 0 or probes):
        return None
    heat = (checkpoint.parent / "val_ap_heatmaps.npy" if checkpoint is not None else
            Path(tempfile.gettempdir()) / f"hintpose-val-ap-{os.getpid()}.npy")
    batch, decoder = tp.batch_size * 4, model.spec.decoder
    return Curves(
        ValAP(data.val, tp.val_images, VAL_SEED, decoder, batch) if tp.val_images else None,
        ProbeSettings(pairs=tp.probe_pairs, decoder=decoder, batch_size=batch)
        if probes else None, heat)


def train_pose_model(model: StartedModel, data: PoseData, schedule: PoseTrainParams,
                     rt: Runtime, checkpoint: Path | None = None, *,
                     info: DistInfo = SINGLE_PROCESS, progress: bool = True,
                     on_epoch_end: Any = None) -> TrainResult:
    """Train ``model`` (see :func:`start_model`) with HRNet's recipe (the module docstring)
    and ``schedule`` on ``rt`` through :func:`hintpose.engine.fit`; ``checkpoint`` is the
    engine's resumable ``last.pt``. The result's config is the ``model.json`` record."""
    spec, tp = model.spec, schedule
    instances = select_training_instances(data.train, tp.max_samples, spec.seed)
    fingerprint = _fingerprint(spec, data.params, tp, instances_digest(instances),
                               model.init_digest)
    net = model.net.to(device=rt.device, memory_format=rt.memory_format)
    task = PoseTask(data, instances, tp, spec, rt, info, _curves(model, data, tp, checkpoint))
    # A recurrent model with one hop never uses its feedback blocks.
    fitted = fit(net, task, Schedule(tp.epochs, tp.lr, tp.lr_steps, tp.lr_factor,
                                     fused_adam=rt.device.type in ("cpu", "cuda"),
                                     added_lr_mult=tp.added_lr_mult),
                 rt.device, checkpoint, fingerprint, info=info, progress=progress,
                 on_epoch_end=on_epoch_end,
                 find_unused_parameters=spec.recurrent and spec.hops == 1)
    return TrainResult(net, spec.to_json(), fitted.log, fitted.resumed_epochs)
