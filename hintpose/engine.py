"""The one training loop of every network trained here: pose models, MultiPoseNet, PoseFix.

A network brings a :class:`Task` (its batches per epoch, its loss, its validation); the engine
owns everything else: Adam with step decay of the lr at fractions of the schedule, the epoch
loop with a progress bar and one log line per epoch, DDP (the model wrapped, losses averaged
over ranks, BatchNorm statistics of rank 0), and the resumable checkpoint ``last.pt``, written
by rank 0 after every epoch and read back only when its fingerprint (everything that decides
the trained weights) equals this run's. Every random draw of a task comes from seeds, so a run
killed and resumed from ``last.pt`` ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from hintpose.errors import DataError
from hintpose.io import finish_dir, save_torch, start_dir
from hintpose.models.folder import save_network
from hintpose.runtime import SINGLE_PROCESS, DistInfo, all_reduce_sum
from hintpose.trainlog import write_log

CHECKPOINT = "last.pt"
EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class Schedule:
    """Adam (no weight decay) at ``lr`` for ``epochs``, times ``lr_factor`` at each fraction
    ``lr_steps`` of the schedule (HRNet: 170 and 200 of 210 epochs). ``fused_adam`` picks
    PyTorch's fused Adam kernel (the pose models) instead of the per-tensor loop (MultiPoseNet,
    PoseFix): the two round differently, so each network keeps the one it was tuned with.
    ``added_lr_mult`` scales the lr of the parameters a network lists in
    ``added_parameters()`` (the blocks HintPose adds to a pretrained HRNet)."""

    epochs: int
    lr: float
    lr_steps: Sequence[float] = ()
    lr_factor: float = 0.1
    fused_adam: bool = False
    added_lr_mult: float = 1.0

    def milestones(self) -> list[int]:
        return [max(1, round(f * self.epochs)) for f in self.lr_steps]


class Task:
    """What a network brings to the engine (override the first two)."""

    #: Label of the progress bar and the epoch log line.
    name = "train"

    def batches(self, epoch: int) -> Iterable[Any]:
        """This rank's batches of ``epoch``, in the order they are trained on."""
        raise NotImplementedError

    def losses(self, net: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss to minimise on ``batch`` and the named per-batch means to log."""
        raise NotImplementedError

    def count(self, batch: Any) -> int:
        """Samples in ``batch`` (the weight of its logged means)."""
        return int(batch[0].shape[0])

    def row(self, means: dict[str, float]) -> dict[str, float]:
        """The logged training columns of an epoch from the means over its samples."""
        return means

    def validate(self, net: nn.Module) -> dict[str, float]:
        """Validation figures after an epoch (on every rank; empty: none)."""
        return {}


@dataclass
class TrainResult:
    """A trained network (unwrapped, on the training device), what rebuilds it (its
    ``model.json``) and its per-epoch log; ``resumed_epochs`` came from a checkpoint."""

    model: nn.Module
    config: dict[str, Any]
    log: list[dict[str, float]]
    resumed_epochs: int


@dataclass
class Fitted:
    """The per-epoch log of a run (rows of :meth:`Task.row`, validation, lr, seconds, img/s)
    and how many of its epochs came from a checkpoint."""

    log: list[dict[str, float]]
    resumed_epochs: int


def load_checkpoint(path: Path, fingerprint: dict[str, Any],
                    verbose: bool = True) -> dict[str, Any] | None:
    """The checkpoint at ``path`` when it belongs to this run; None (with a printed note)
    when it was made with other settings. An unreadable file is a DataError."""
    if verbose:  # rank 0: leftovers of a save that was interrupted
        for stale in path.parent.glob(f".{path.name}.tmp*"):
            stale.unlink(missing_ok=True)
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        stored = ckpt["fingerprint"]
    except Exception as exc:
        raise DataError(f"{path}: cannot read the training checkpoint ({exc}); delete it to "
                        "start training afresh") from None
    if stored != fingerprint:
        keys = sorted(k for k in set(stored) | set(fingerprint)
                      if stored.get(k) != fingerprint.get(k))
        if verbose:
            print(f"note: {path} was made with other settings ({', '.join(keys)}); "
                  "training from scratch", flush=True)
        return None
    return ckpt


def format_row(name: str, row: dict[str, float], epochs: int) -> str:
    """The one log line of an epoch."""
    figures = "  ".join(f"{k} {v:.4e}" for k, v in row.items()
                        if k not in ("epoch", "lr", "seconds", "img_s"))
    return (f"{name} epoch {int(row['epoch'])}/{epochs}  lr {row['lr']:.2e}  {figures}  "
            f"{row['img_s']:.1f} img/s  {row['seconds']:.0f} s")


def fit(net: nn.Module, task: Task, schedule: Schedule, device: torch.device,
        checkpoint: Path | None, fingerprint: dict[str, Any], *, info: DistInfo = SINGLE_PROCESS,
        progress: bool = True, on_epoch_end: EpochCallback | None = None,
        find_unused_parameters: bool = False) -> Fitted:
    """Train ``net`` (already on ``device``) on ``task`` with ``schedule`` (see the module
    docstring). With ``checkpoint``, rank 0 writes it after every epoch, and a run finding one
    of the same ``fingerprint`` continues after its last epoch (one of other settings is
    ignored, with a note). ``on_epoch_end(epoch, row)`` runs after each epoch's checkpoint; an
    exception from it stops training there, as a kill would. Returns with ``net`` in eval mode.
    """
    groups: list[dict[str, Any]] = [{"params": list(net.parameters())}]
    added_of = getattr(net, "added_parameters", None)
    if schedule.added_lr_mult != 1.0 and added_of is not None:
        added = {id(p) for p in added_of()}
        groups = [{"params": [p for p in net.parameters() if id(p) not in added]},
                  {"params": [p for p in net.parameters() if id(p) in added],
                   "lr": schedule.lr * schedule.added_lr_mult}]
    optimizer = torch.optim.Adam(groups, lr=schedule.lr, weight_decay=0.0,
                                 fused=schedule.fused_adam or None)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, schedule.milestones(),
                                                     gamma=schedule.lr_factor)
    log: list[dict[str, float]] = []
    start = 0
    ckpt = (load_checkpoint(checkpoint, fingerprint, info.is_main)
            if checkpoint is not None else None)
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        log, start = list(ckpt["log"]), int(ckpt["epoch"])
        if info.is_main:
            print(f"resuming from {checkpoint} after epoch {start}/{schedule.epochs}", flush=True)
        del ckpt
    if info.distributed:
        dist.barrier()  # every rank has read the checkpoint before rank 0 may replace it

    train_net: nn.Module = net
    if info.distributed:
        ids = [device.index] if device.type == "cuda" else None
        train_net = DistributedDataParallel(net, device_ids=ids,
                                            find_unused_parameters=find_unused_parameters)
    show = progress and info.is_main
    for epoch in range(start, schedule.epochs):
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train_net.train()
        sums: dict[str, float] = {}
        count = 0
        bar = tqdm(task.batches(epoch), desc=f"{task.name} epoch {epoch + 1}/{schedule.epochs}",
                   leave=False, disable=not show)
        for batch in bar:
            loss, logged = task.losses(train_net, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n = task.count(batch)
            for key, value in logged.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach()) * n
            count += n
            bar.set_postfix(loss=f"{float(loss.detach()):.3e}", refresh=False)
        scheduler.step()
        train_seconds = time.perf_counter() - t0
        *totals, count_all = all_reduce_sum([*sums.values(), count], info, device)
        if info.distributed:
            for buf in net.buffers():  # BN statistics of rank 0, as saved and used later
                dist.broadcast(buf, 0)
        val = task.validate(net)
        means = {key: total / max(count_all, 1) for key, total in zip(sums, totals, strict=True)}
        row: dict[str, float] = {"epoch": epoch + 1, "lr": float(lr), **task.row(means), **val,
                                 "seconds": time.perf_counter() - t0,
                                 "img_s": count_all / max(train_seconds, 1e-9)}
        log.append(row)
        if info.is_main:
            if checkpoint is not None:
                save_torch({"fingerprint": fingerprint, "epoch": epoch + 1,
                            "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "log": log}, checkpoint)
            print(format_row(task.name, row, schedule.epochs), flush=True)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    net.eval()
    return Fitted(log, start)


def mean_over(values: Iterable[tuple[float, int]], info: DistInfo,
              device: torch.device) -> float:
    """Sample-weighted mean of (batch mean, batch size) pairs over every rank; NaN if none."""
    total = count = 0.0
    for value, n in values:
        total, count = total + value * n, count + n
    total, count = all_reduce_sum([total, count], info, device)
    return total / count if count else math.nan


def finish_training(out_dir: Path, net: nn.Module, config: dict[str, Any],
                    log: Sequence[dict[str, float]], log_dir: Path, checkpoint: Path) -> None:
    """What a training stage leaves: the model folder (built aside, then moved in), the
    dvclive log, and no checkpoint (a finished run's would make the next run, say after a code
    change, "resume" at its last epoch instead of training)."""
    save_network(start_dir(out_dir), net, config)
    write_log(log_dir, log)
    finish_dir(out_dir)
    checkpoint.unlink(missing_ok=True)
