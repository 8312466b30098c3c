"""Per-epoch training logs in dvclive folders: what DVC reads (metrics.json, one TSV curve per
figure with step = epoch) and what the report reads back."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hintpose.errors import DataError
from hintpose.trainlog import read_log, write_log

NAN = float("nan")
ROWS = [
    {"epoch": 1, "lr": 1e-3, "train_loss": 0.5, "val_loss": NAN, "seconds": 2.5},
    {"epoch": 2, "lr": 1e-3, "train_loss": 0.25, "val_loss": 0.375, "seconds": 2.25},
    {"epoch": 3, "lr": 1e-4, "train_loss": 0.125, "val_loss": 0.3125, "seconds": 2.0},
]


def curve(folder: Path, name: str) -> list[list[str]]:
    lines = (folder / "plots" / "metrics" / f"{name}.tsv").read_text().splitlines()
    return [line.split("\t") for line in lines]


def test_round_trip(tmp_path: Path) -> None:
    write_log(tmp_path / "log", ROWS)
    frame = read_log(tmp_path / "log")
    assert list(frame.columns) == ["epoch", "lr", "seconds", "train_loss", "val_loss"]
    assert frame["epoch"].tolist() == [1, 2, 3]
    for key in ("lr", "train_loss", "seconds"):
        assert frame[key].tolist() == [r[key] for r in ROWS], key  # exact: repr round trip
    # one curve per figure, step = epoch; the epoch itself is the step, not a curve
    assert curve(tmp_path / "log", "train_loss") == [["step", "train_loss"], ["1", "0.5"],
                                                     ["2", "0.25"], ["3", "0.125"]]
    assert not (tmp_path / "log" / "plots" / "metrics" / "epoch.tsv").exists()
    # metrics.json: the last epoch's figures (what `dvc exp show` lists)
    metrics = json.loads((tmp_path / "log" / "metrics.json").read_text())
    assert metrics == {"lr": 1e-4, "train_loss": 0.125, "val_loss": 0.3125, "seconds": 2.0,
                       "step": 3}


def test_non_finite_values_are_left_out(tmp_path: Path) -> None:
    write_log(tmp_path / "log", ROWS)
    assert curve(tmp_path / "log", "val_loss") == [["step", "val_loss"], ["2", "0.375"],
                                                   ["3", "0.3125"]]
    frame = read_log(tmp_path / "log")
    assert math.isnan(frame["val_loss"][0]) and frame["val_loss"][1:].tolist() == [0.375, 0.3125]
    # a figure that is never finite (no val set: NaN every epoch) is no curve and no metric
    rows = [{**r, "val_loss": NAN, "img_s": math.inf} for r in ROWS]
    write_log(tmp_path / "noval", rows)
    assert "val_loss" not in read_log(tmp_path / "noval").columns
    assert not (tmp_path / "noval" / "plots" / "metrics" / "img_s.tsv").exists()
    metrics = json.loads((tmp_path / "noval" / "metrics.json").read_text())
    assert "val_loss" not in metrics and "img_s" not in metrics and metrics["step"] == 3


def test_an_empty_log_still_gives_the_files_dvc_expects(tmp_path: Path) -> None:
    """A run without epochs (given detector weights, pretraining switched off) logs nothing,
    yet dvc.yaml declares <folder>/metrics.json and <folder>/plots/metrics."""
    write_log(tmp_path / "log", [])
    assert json.loads((tmp_path / "log" / "metrics.json").read_text()) == {}
    assert (tmp_path / "log" / "plots" / "metrics").is_dir()
    assert not any((tmp_path / "log" / "plots" / "metrics").iterdir())
    frame = read_log(tmp_path / "log")
    assert list(frame.columns) == ["epoch"] and len(frame) == 0


def test_a_log_replaces_the_folder(tmp_path: Path) -> None:
    """A rerun's log is the new run only: no curve of an earlier run survives."""
    write_log(tmp_path / "log", [{**r, "old_figure": 1.0} for r in ROWS])
    (tmp_path / "log" / "stray.txt").write_text("left by hand")
    write_log(tmp_path / "log", ROWS[:1])
    frame = read_log(tmp_path / "log")
    assert "old_figure" not in frame.columns and frame["epoch"].tolist() == [1]
    assert not (tmp_path / "log" / "stray.txt").exists()
    assert json.loads((tmp_path / "log" / "metrics.json").read_text())["step"] == 1


def test_a_missing_log_is_a_data_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope: posefix log not found \(a dvclive folder\)"):
        read_log(tmp_path / "nope", "posefix log")
