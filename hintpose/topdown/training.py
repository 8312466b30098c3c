"""The pose models' training: HRNet's COCO recipe on top-down crops, through the engine.

Recipe (official HRNet ``w32_256x192``): Adam without weight decay, step decay of the lr by
``lr_factor`` at fractions ``lr_steps`` of the schedule, JointsMSELoss with target weights,
summed over the hops of a recurrent model; the validation loss is that of the last hop.

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

from hintpose.config import (
    EvalParams,
    ModelParams,
    PoseParams,
    PoseTrainParams,
)
from hintpose.data.coco import CocoPersons
from hintpose.engine import Schedule, Task, TrainResult, fit, mean_over
from hintpose.errors import DataError
from hintpose.io import file_digest
from hintpose.models.hintpose import HintPose, joints_mse_loss
from hintpose.runtime import SINGLE_PROCESS, DistInfo, Runtime, worker_init
from hintpose.topdown.cue_probe import probe_row
from hintpose.topdown.samples import Instance, TopDownDataset, training_instances
from hintpose.topdown.val_ap import ValAP
from hintpose.topdown.weights import load_cue_init, load_pretrained_backbone

#: Seed of the validation subset and its cues: the same for every model, so that the
#: validation losses of different models compare.
VAL_SEED = 0

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def model_hops(pose: PoseParams, model: ModelParams) -> int:
    """Number of outputs: ``pose.hops`` for a recurrent model, else one."""
    return pose.hops if model.recurrent else 1


def model_config(pose: PoseParams, model: ModelParams, coco: CocoPersons) -> dict[str, Any]:
    """What inference needs to rebuild the network and prepare its inputs (``model.json``)."""
    d = pose.data
    return {
        "width": pose.width,
        "modules": list(pose.modules),
        "blocks": pose.blocks,
        "init": pose.init,
        "instance_cue": model.instance_cue,
        "recurrent": model.recurrent,
        "hops": model_hops(pose, model),
        "num_joints": coco.num_joints,
        "input_width": d.input_width,
        "input_height": d.input_height,
        "sigma": d.sigma,
        "target": d.target,
        "cue_sigma": d.cue_sigma,
        "box_padding": d.box_padding,
        "keypoint_names": list(coco.category["keypoints"]),
        "seed": model.seed,
    }


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


def _collate(items: list[tuple[Any, ...]]) -> Batch:
    """Stack image, target, target weight and cue (paired items, with a leading pair axis,
    are concatenated: a batch of B pairs holds 2B samples); the meta dicts are not needed."""
    join = torch.cat if items[0][0].dim() == 4 else torch.stack
    return tuple(join([it[k] for it in items]) for k in range(4))  # type: ignore[return-value]


def _loader(dataset: Dataset, sampler: Sampler | range, batch_size: int, workers: int,
            device: torch.device) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=_collate, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0,
                      worker_init_fn=worker_init if workers > 0 else None)


def forward_losses(net: nn.Module, batch: Batch, rt: Runtime,
                   instance_cue: bool) -> list[torch.Tensor]:
    """Per-hop JointsMSELoss (fp32) of one batch; their sum is the training loss."""
    images, target, weight, cue = batch
    target = target.to(rt.device, non_blocking=True)
    weight = weight.to(rt.device, non_blocking=True)
    cue_in = rt.images(cue) if instance_cue else None
    with rt.autocast():
        outputs = net(rt.images(images), cue_in)
    per_hop = target.dim() == 5  # coarse-to-fine: (N, hops, J, h, w)
    return [joints_mse_loss([out.float()], target[:, h] if per_hop else target, weight)
            for h, out in enumerate(outputs)]


@dataclasses.dataclass(frozen=True)
class Curves:
    """What a pose model measures after every epoch, besides its losses: the GT-box AP of a
    few val images (``val_ap``) and, for cue models, the cue probe (``probe``: its settings,
    ``probe.cue_probe_pairs`` pairs), with the model's ``config``; heatmaps pass through
    ``heatmap_file``."""

    val_ap: ValAP | None
    probe: EvalParams | None
    config: dict[str, Any]
    heatmap_file: Path


class PoseTask(Task):
    """A pose model's crops, its per-hop loss and its last-hop validation loss."""

    name = "pose"

    def __init__(self, train_coco: CocoPersons, val_coco: CocoPersons | None,
                 instances: Sequence[Instance], pose: PoseParams, tp: PoseTrainParams,
                 model: ModelParams, rt: Runtime, info: DistInfo, hops: int,
                 curves: Curves | None = None) -> None:
        self.rt, self.info, self.hops, self.cue = rt, info, hops, model.instance_cue
        self.curves = curves
        self.train_ds = TopDownDataset(train_coco, instances, pose.data, train=True,
                                       seed=model.seed, other_boxes=model.instance_cue, hops=hops)
        self.sampler = _EpochSampler(DistributedSampler(
            range(len(instances)), num_replicas=info.world_size, rank=info.rank, shuffle=True,
            seed=model.seed))
        self.loader = _loader(_EpochDataset(self.train_ds), self.sampler, tp.batch_size,
                              tp.workers, rt.device)
        self.val_loader = None
        self.val_coco = val_coco
        if val_coco is not None:
            val_inst = validation_instances(val_coco, tp.val_samples)[info.rank::info.world_size]
            if val_inst or info.distributed:
                val_ds = TopDownDataset(val_coco, val_inst, pose.data, train=False, seed=VAL_SEED)
                self.val_loader = _loader(val_ds, range(len(val_ds)), tp.batch_size, tp.workers,
                                          rt.device)

    def batches(self, epoch: int) -> DataLoader:
        self.sampler.set_epoch(epoch)
        self.train_ds.set_epoch(epoch)
        return self.loader

    def losses(self, net: nn.Module, batch: Batch) -> tuple[torch.Tensor,
                                                            dict[str, torch.Tensor]]:
        hops = forward_losses(net, batch, self.rt, self.cue)
        return torch.stack(hops).sum(), {f"train_loss_hop{h + 1}": v
                                         for h, v in enumerate(hops)}

    def row(self, means: dict[str, float]) -> dict[str, float]:
        hops = list(means.values())
        return {"train_loss": sum(hops), **(means if self.hops > 1 else {})}

    @torch.no_grad()
    def validate(self, net: nn.Module) -> dict[str, float]:
        row = {"val_loss": float("nan")}
        if self.val_loader is not None:
            net.eval()
            row["val_loss"] = mean_over(
                ((float(forward_losses(net, batch, self.rt, self.cue)[-1]), batch[0].shape[0])
                 for batch in self.val_loader), self.info, self.rt.device)
        c = self.curves
        if c is not None and c.val_ap is not None:
            *earlier, row["val_AP"] = c.val_ap.per_hop(net, c.config, self.rt, c.heatmap_file)
            row.update({f"val_AP_hop{h + 1}": ap for h, ap in enumerate(earlier)})
        if c is not None and c.probe is not None and self.val_coco is not None:
            row.update(probe_row(net, c.config, self.val_coco, c.heatmap_file, c.probe, self.rt))
        return row


def _fingerprint(config: dict[str, Any], pose: PoseParams, tp: PoseTrainParams, digest: str,
                 init: str) -> dict[str, Any]:
    """Everything that decides the trained weights (a checkpoint resumes only when equal)."""
    return {**config, "data": dataclasses.asdict(pose.data), "train": dataclasses.asdict(tp),
            "init": init, "instances": digest}


def train_pose_model(
    train_coco: CocoPersons, val_coco: CocoPersons | None, pose: PoseParams,
    model: ModelParams, rt: Runtime, checkpoint: Path | None = None, *,
    schedule: PoseTrainParams | None = None, info: DistInfo = SINGLE_PROCESS,
    progress: bool = True, on_epoch_end: Any = None, init: str | Path | None = None,
    init_key: str = "pose.pretrained", cue_init: str | Path | None = None,
) -> TrainResult:
    """Train one pose model with HRNet's recipe (see the module docstring) and the
    ``schedule`` (default ``pose.train``) on ``rt`` through :func:`hintpose.engine.fit`.

    The backbone starts from the HRNet checkpoint ``init`` (named by the parameter
    ``init_key`` in errors; default: ``pose.pretrained``, if set), the HintPose additions
    from zero, so the model starts as that HRNet. A cue model given ``cue_init`` (the cue
    branch's :data:`CUE_WEIGHTS`) starts from it instead. ``checkpoint`` is the engine's
    resumable ``last.pt``."""
    tp = schedule if schedule is not None else pose.train
    instances = select_training_instances(train_coco, tp.max_samples, model.seed)
    config = model_config(pose, model, train_coco)
    if init is None and pose.pretrained:
        init = pose.pretrained
    torch.manual_seed(model.seed)
    net = HintPose.from_config(config)
    if model.instance_cue and cue_init is not None:
        load_cue_init(net, cue_init)
        init = cue_init
    elif init is not None:
        load_pretrained_backbone(net, init, init_key)
    fingerprint = _fingerprint(config, pose, tp, instances_digest(instances),
                               file_digest(init) if init is not None else "")

    net.to(device=rt.device, memory_format=rt.memory_format)
    curves = None
    probes = model.instance_cue and tp.probe_pairs > 0
    if val_coco is not None and (tp.val_images > 0 or probes):
        decoder = "dark" if pose.data.target == "unbiased" else "hrnet"
        heat = (checkpoint.parent / "val_ap_heatmaps.npy" if checkpoint is not None else
                Path(tempfile.gettempdir()) / f"hintpose-val-ap-{os.getpid()}.npy")
        batch = tp.batch_size * 4
        curves = Curves(
            ValAP(val_coco, tp.val_images, VAL_SEED, decoder, batch) if tp.val_images else None,
            EvalParams(decoder=decoder, batch_size=batch, workers=0, flip_test=False,
                       cue_probe_pairs=tp.probe_pairs) if probes else None,
            config, heat)
    task = PoseTask(train_coco, val_coco, instances, pose, tp, model, rt, info, config["hops"],
                    curves)
    # A recurrent model with one hop never uses its feedback blocks.
    fitted = fit(net, task, Schedule(tp.epochs, tp.lr, tp.lr_steps, tp.lr_factor,
                                     fused_adam=rt.device.type in ("cpu", "cuda"),
                                     added_lr_mult=tp.added_lr_mult),
                 rt.device, checkpoint, fingerprint, info=info, progress=progress,
                 on_epoch_end=on_epoch_end,
                 find_unused_parameters=config["recurrent"] and config["hops"] == 1)
    return TrainResult(net, config, fitted.log, fitted.resumed_epochs)


