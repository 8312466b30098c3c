"""Training of an MMDetection person detector with mmengine's Runner (the config comes from
hintpose.detection.config.training_config), with one log row per epoch."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hintpose.detection.config import require_mmdet


def _epoch_log_hook() -> Any:
    from mmengine.hooks import Hook

    class EpochLog(Hook):
        """Mean training losses per epoch and the val box AP, for the TSV of ``dvc plots``."""

        priority = "LOW"

        def __init__(self) -> None:
            self.rows: list[dict[str, float]] = []
            self._sums: dict[str, list[float]] = defaultdict(list)

        def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None,
                             outputs: Any = None) -> None:
            for key, value in (outputs or {}).items():
                if key.startswith("loss"):
                    self._sums[key].append(float(value.detach()))

        def after_train_epoch(self, runner: Any) -> None:
            row = {"epoch": float(runner.epoch + 1)}
            row.update({k: float(np.mean(v)) for k, v in sorted(self._sums.items())})
            row.update({"val_AP": float("nan"), "val_AP50": float("nan")})
            self.rows.append(row)
            self._sums.clear()

        def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
            if self.rows and metrics:
                self.rows[-1]["val_AP"] = float(metrics.get("coco/bbox_mAP", float("nan")))
                self.rows[-1]["val_AP50"] = float(metrics.get("coco/bbox_mAP_50", float("nan")))

    return EpochLog()


@dataclass
class TrainedDetector:
    model: torch.nn.Module
    config: Any
    log: list[dict[str, float]]
    seconds: float


def train_detector(cfg: Any, threads: int = 0) -> TrainedDetector:
    """Train ``cfg`` (from ``training_config``) with mmengine's Runner."""
    require_mmdet()
    from mmengine.runner import Runner

    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    hook = _epoch_log_hook()
    runner.register_hook(hook)
    model = runner.train()
    model = getattr(model, "module", model)
    model.cfg = cfg
    return TrainedDetector(model, cfg, hook.rows, time.perf_counter() - start)
