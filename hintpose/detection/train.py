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

What a user sees is this project's: a progress bar per epoch and one line per epoch (losses,
val box AP, seconds). MMEngine logs only warnings and errors (its INFO wall of environment,
config and every paramwise option is dropped, and so are the deprecation notices of its own
file API); what mmengine, mmdet and pycocotools print to stdout during training and their
Python warnings are swallowed (:func:`quiet_mmdet`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from tqdm import tqdm

from hintpose.detection.config import mmdet_warnings_off, require_mmdet
from hintpose.errors import ConfigError
from hintpose.io import write_json

#: The config a work folder belongs to, and the epoch rows logged in it so far.
FINGERPRINT, ROWS = "fingerprint.txt", "epoch_rows.json"
#: MMEngine log messages that are noise to a user: the deprecation notices of its file API.
NOISE = ("will be deprecated", "is the alias of")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(n in message for n in NOISE)


class _Discard(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


@contextlib.contextmanager
def quiet_mmdet() -> Iterator[TextIO]:
    """Run mmengine/mmdet code without its chatter: stdout (pycocotools' summaries, mmengine's
    notes) is discarded and Python warnings raised from mmengine, mmdet, mmcv (and torch's
    meshgrid notice they trigger) are ignored; yields the real stdout for this project's own
    lines. MMEngine's logger keeps the stream it was built with (build the Runner outside)."""
    real = sys.stdout
    with mmdet_warnings_off(), contextlib.redirect_stdout(_Discard()):
        yield real


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


def format_row(row: dict[str, float], epochs: int) -> str:
    """The one log line of a detector epoch (as hintpose.engine's for the other networks)."""
    figures = "  ".join(f"{k} {v:.4e}" for k, v in row.items()
                        if k.startswith("loss") and np.isfinite(v))
    val = (f"  val_AP {row['val_AP']:.4f}  val_AP50 {row['val_AP50']:.4f}"
           if np.isfinite(row.get("val_AP", np.nan)) else "")
    return f"detector epoch {int(row['epoch'])}/{epochs}  {figures}{val}  {row['seconds']:.0f} s"


def _epoch_log_hook(rows_file: Path, out: TextIO) -> Any:
    from mmengine.hooks import Hook

    class EpochLog(Hook):
        """Mean training losses per epoch and the val box AP (for the dvclive log), kept in
        ``rows_file`` so that a resumed run has the rows of the epochs before it; a progress
        bar per epoch and one line per epoch (with its val AP, when validated) on ``out``."""

        priority = "LOW"

        def __init__(self) -> None:
            self.rows: list[dict[str, float]] = []
            self._sums: dict[str, list[float]] = defaultdict(list)
            self._start = time.perf_counter()
            self._bar: tqdm | None = None
            self._pending: dict[str, float] | None = None  # the epoch row not yet printed
            self._epochs = 0

        def _flush(self) -> None:
            if self._pending is not None:
                print(format_row(self._pending, self._epochs), file=out, flush=True)
                self._pending = None

        def _bar_for(self, total: int, desc: str) -> None:
            if self._bar is not None:
                self._bar.close()
            self._bar = tqdm(total=total, desc=desc, unit="batch", leave=False)

        def before_train(self, runner: Any) -> None:
            self._epochs = runner.max_epochs
            if rows_file.is_file():  # a resumed run: the rows up to its checkpoint
                self.rows = [r for r in json.loads(rows_file.read_text())
                             if r["epoch"] <= runner.epoch]
            if runner.epoch:
                print(f"detector: resuming after epoch {runner.epoch}/{self._epochs}",
                      file=out, flush=True)

        def before_train_epoch(self, runner: Any) -> None:
            self._flush()
            self._start = time.perf_counter()
            self._bar_for(len(runner.train_dataloader),
                          f"detector epoch {runner.epoch + 1}/{self._epochs}")

        def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None,
                             outputs: Any = None) -> None:
            for key, value in (outputs or {}).items():
                if key.startswith("loss"):
                    self._sums[key].append(float(value.detach()))
            if self._bar is not None:
                self._bar.update()

        def after_train_epoch(self, runner: Any) -> None:
            row = {"epoch": float(runner.epoch + 1),
                   "seconds": round(time.perf_counter() - self._start, 2)}
            row.update({k: float(np.mean(v)) for k, v in sorted(self._sums.items())})
            row.update({"val_AP": float("nan"), "val_AP50": float("nan")})
            self.rows.append(row)
            self._sums.clear()
            write_json(rows_file, self.rows)
            self._pending = row

        def before_val_epoch(self, runner: Any) -> None:
            self._bar_for(len(runner.val_dataloader), "detector val")

        def after_val_iter(self, runner: Any, batch_idx: int, data_batch: Any = None,
                           outputs: Any = None) -> None:
            if self._bar is not None:
                self._bar.update()

        def after_train(self, runner: Any) -> None:
            if self._bar is not None:
                self._bar.close()
            self._flush()

        def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
            # The message hub's logged histories pickle bound methods (builtins.getattr),
            # which torch.load(weights_only=True) rightly refuses: resume without them.
            checkpoint["message_hub"] = {"log_scalars": {}, "runtime_info": {},
                                         "resumed_keys": {}}

        def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
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
    if work_dir.is_dir() and any(work_dir.iterdir()) and (
            not stamp.is_file() or stamp.read_text() != fingerprint):
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
    cfg.log_level = "WARNING"  # not part of the fingerprint: only what is shown
    with mmdet_warnings_off():
        runner = Runner.from_cfg(cfg)
    runner.logger.addFilter(_DropNoise())
    with quiet_mmdet() as out:
        hook = _epoch_log_hook(work_dir / ROWS, out)
        runner.register_hook(hook)
        model = runner.train()
    model = getattr(model, "module", model)
    model.cfg = cfg
    return TrainedDetector(model, cfg, hook.rows, time.perf_counter() - start, resumed)
