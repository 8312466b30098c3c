"""Training of an MMDetection person detector with mmengine's Runner (the config comes from
hintpose.detection.config.training_config), resumable, with one log row per epoch.

With a ``Runtime`` of bf16 and/or channels_last (``runtime.bf16`` where the CPU has fast bf16
kernels, ``runtime.channels_last``), the forward passes and losses run under bf16 autocast
(``Bf16OptimWrapper``: MMEngine's own AMP wrapper is for GPUs only) and the model in
channels_last memory: part of the training fingerprint, as they change the weights.

The Runner's work folder keeps the last epoch's checkpoint (MMEngine's CheckpointHook) and the
epoch rows so far; a run that finds a work folder of the same config continues after its last
epoch through MMEngine's own resume, one of another config is cleared first. The stage removes
the folder once the detector is saved.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hintpose.detection.config import require_mmdet
from hintpose.errors import ConfigError
from hintpose.io import write_json

#: The config a work folder belongs to, and the epoch rows logged in it so far.
FINGERPRINT, ROWS = "fingerprint.txt", "epoch_rows.json"


def register_bf16_wrapper() -> str:
    """Register (once) an mmengine optimizer wrapper that runs the model's forward pass and
    loss under CPU/GPU bf16 autocast; returns its registry name."""
    from mmengine.optim import OptimWrapper
    from mmengine.registry import OPTIM_WRAPPERS

    name = "HintposeBf16OptimWrapper"
    if OPTIM_WRAPPERS.get(name) is None:

        class Bf16OptimWrapper(OptimWrapper):
            """OptimWrapper whose ``optim_context`` adds bf16 autocast on the model's device."""

            @contextlib.contextmanager
            def optim_context(self, model: torch.nn.Module) -> Iterator[None]:
                device = next(model.parameters()).device.type
                with super().optim_context(model), torch.autocast(device, torch.bfloat16):
                    yield

        OPTIM_WRAPPERS.register_module(name=name, module=Bf16OptimWrapper)
    return name


def with_runtime(cfg: Any, bf16: bool, channels_last: bool) -> Any:
    """``cfg`` (a training config) set to train under bf16 autocast and/or with the model in
    channels_last memory; unchanged when neither."""
    if bf16:
        if cfg.optim_wrapper.get("type", "OptimWrapper") != "OptimWrapper":
            raise ConfigError(f"runtime.bf16: the detector config's optim_wrapper type "
                              f"{cfg.optim_wrapper.type!r} is not mmengine's plain OptimWrapper "
                              "(set runtime.bf16 false for it)")
        cfg.optim_wrapper.type = register_bf16_wrapper()
    if channels_last:
        cfg.custom_hooks = [*cfg.get("custom_hooks", []), {"type": register_channels_last()}]
    return cfg


def register_channels_last() -> str:
    """Register (once) an mmengine hook that puts the model in channels_last memory before
    training; returns its registry name."""
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    name = "HintposeChannelsLastHook"
    if HOOKS.get(name) is None:

        class ChannelsLast(Hook):
            priority = "VERY_HIGH"

            def before_train(self, runner: Any) -> None:
                runner.model.to(memory_format=torch.channels_last)

        HOOKS.register_module(name=name, module=ChannelsLast)
    return name


def _epoch_log_hook(rows_file: Path) -> Any:
    from mmengine.hooks import Hook

    class EpochLog(Hook):
        """Mean training losses per epoch and the val box AP (for the dvclive log), kept in
        ``rows_file`` so that a resumed run has the rows of the epochs before it."""

        priority = "LOW"

        def __init__(self) -> None:
            self.rows: list[dict[str, float]] = []
            self._sums: dict[str, list[float]] = defaultdict(list)
            self._start = time.perf_counter()

        def before_train(self, runner: Any) -> None:
            if rows_file.is_file():  # a resumed run: the rows up to its checkpoint
                self.rows = [r for r in json.loads(rows_file.read_text())
                             if r["epoch"] <= runner.epoch]

        def before_train_epoch(self, runner: Any) -> None:
            self._start = time.perf_counter()

        def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None,
                             outputs: Any = None) -> None:
            for key, value in (outputs or {}).items():
                if key.startswith("loss"):
                    self._sums[key].append(float(value.detach()))

        def after_train_epoch(self, runner: Any) -> None:
            row = {"epoch": float(runner.epoch + 1),
                   "seconds": round(time.perf_counter() - self._start, 2)}
            row.update({k: float(np.mean(v)) for k, v in sorted(self._sums.items())})
            row.update({"val_AP": float("nan"), "val_AP50": float("nan")})
            self.rows.append(row)
            self._sums.clear()
            write_json(rows_file, self.rows)

        def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
            # The message hub's logged histories pickle bound methods (builtins.getattr),
            # which torch.load(weights_only=True) rightly refuses: resume without them.
            checkpoint["message_hub"] = {"log_scalars": {}, "runtime_info": {},
                                         "resumed_keys": {}}

        def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
            if self.rows and metrics:
                self.rows[-1]["val_AP"] = float(metrics.get("coco/bbox_mAP", float("nan")))
                self.rows[-1]["val_AP50"] = float(metrics.get("coco/bbox_mAP_50", float("nan")))
                write_json(rows_file, self.rows)

    return EpochLog()


@dataclass
class TrainedDetector:
    model: torch.nn.Module
    config: Any
    log: list[dict[str, float]]
    seconds: float
    resumed: bool


#: The parts of a training config that decide the trained weights.
TRAINING_KEYS = ("model", "train_dataloader", "train_cfg", "optim_wrapper", "param_scheduler",
                 "randomness")


def training_fingerprint(cfg: Any) -> str:
    """A digest of what decides the weights of ``cfg``'s training (a work folder resumes only
    for the same)."""
    from mmengine.config import Config

    part = Config({k: cfg.get(k) for k in TRAINING_KEYS})
    return hashlib.sha256(part.pretty_text.encode()).hexdigest()


def claim_work_dir(work_dir: Path, fingerprint: str) -> bool:
    """Make ``work_dir`` this config's: True when it already holds a checkpoint of it."""
    stamp = work_dir / FINGERPRINT
    if work_dir.is_dir() and (not stamp.is_file() or stamp.read_text() != fingerprint):
        print(f"note: {work_dir} was made with another detector config; training from scratch",
              flush=True)
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    return (work_dir / "last_checkpoint").is_file()


def train_detector(cfg: Any, threads: int = 0) -> TrainedDetector:
    """Train ``cfg`` (from ``training_config``, whose work folder resumes) with mmengine's
    Runner."""
    require_mmdet()
    from mmengine.runner import Runner

    if threads:
        torch.set_num_threads(threads)
    work_dir = Path(cfg.work_dir)
    resumed = claim_work_dir(work_dir, training_fingerprint(cfg))
    start = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    hook = _epoch_log_hook(work_dir / ROWS)
    runner.register_hook(hook)
    model = runner.train()
    model = getattr(model, "module", model)
    model.cfg = cfg
    return TrainedDetector(model, cfg, hook.rows, time.perf_counter() - start, resumed)
