"""The detector resumes a killed training through MMEngine's own resume, weights_only-safe."""

from __future__ import annotations

from pathlib import Path

import pytest

from hintpose.config import DatasetParams, DetectorParams, DetectorTrainParams
from hintpose.data.params import SyntheticConfig
from hintpose.data.prepare import prepare_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY = f"""_base_ = {str(ROOT / 'configs/detector/fcos_person.py')!r}
model = dict(backbone=dict(base_channels=8), neck=dict(in_channels=[8, 16, 32, 64],
             out_channels=32), bbox_head=dict(in_channels=32, feat_channels=32))
"""


class Killed(Exception):
    """Stands for a kill after an epoch's checkpoint."""


def test_a_killed_detector_training_resumes_after_its_last_epoch(tmp_path: Path) -> None:
    pytest.importorskip("mmdet")
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    from hintpose.detection.config import load_config, training_config
    from hintpose.detection.train import (
        ROWS,
        claim_work_dir,
        train_detector,
        training_fingerprint,
    )

    @HOOKS.register_module(force=True)
    class KillAfterEpoch(Hook):
        priority = "LOWEST"  # after MMEngine's CheckpointHook has saved the epoch

        def __init__(self, epoch: int) -> None:
            self.epoch = epoch

        def after_train_epoch(self, runner) -> None:
            if runner.epoch + 1 == self.epoch:
                raise Killed

    splits = prepare_dataset(tmp_path / "dataset", DatasetParams(
        train_images=8, val_images=2, synthetic=SyntheticConfig()), progress=False)
    (tmp_path / "tiny.py").write_text(TINY)
    params = DetectorParams(config=str(tmp_path / "tiny.py"), train=DetectorTrainParams(
        epochs=3, batch_size=4, workers=0, val_interval=1, val_images=0))
    work = tmp_path / "work"
    cfg = training_config(load_config(params.config), splits["train"], splits["val"], params,
                          work)
    # one Runner per process in the stage; here each gets its own name (MMEngine's global
    # visualizer is keyed by it, by default the second the Runner starts)
    cfg.experiment_name = "resumed"
    killed = cfg.copy()
    killed.experiment_name = "killed"
    killed.custom_hooks = [{"type": "KillAfterEpoch", "epoch": 2}]
    with pytest.raises(Killed):
        train_detector(killed)
    assert (work / "last_checkpoint").is_file() and (work / ROWS).is_file()

    result = train_detector(cfg)
    assert result.resumed
    assert [int(r["epoch"]) for r in result.log] == [1, 2, 3]  # the log spans both runs
    # a work folder of another schedule is cleared, not resumed (checked without a third
    # Runner: MMEngine's global visualizer keeps the first Runner's folder in this process)
    other = DetectorParams(config=params.config, train=DetectorTrainParams(
        epochs=1, batch_size=4, workers=0, val_interval=1, val_images=0))
    other_cfg = training_config(load_config(params.config), splits["train"], splits["val"],
                                other, work)
    assert training_fingerprint(other_cfg) != training_fingerprint(cfg)
    assert training_fingerprint(cfg) == training_fingerprint(killed)  # hooks do not count
    (work / "last_checkpoint").write_text("epoch_3.pth")
    assert claim_work_dir(work, training_fingerprint(cfg))
    assert not claim_work_dir(work, training_fingerprint(other_cfg))
    assert not (work / "last_checkpoint").exists()
