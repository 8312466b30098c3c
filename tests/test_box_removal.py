"""The box-removal study: nested dropped boxes, AP falling as boxes go, the persons without a box
that neighbour poses still find, both protocols, and the stage's clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hintpose.config import EvalParams
from hintpose.data.coco import CocoPersons
from hintpose.data.params import DatasetParams
from hintpose.data.prepare import prepare_dataset
from hintpose.topdown.box_removal import (
    ModelOutput,
    box_removal_study,
    dropped_boxes,
    persons_found,
)
from hintpose.topdown.outputs import INDEX_COLUMNS
from hintpose.topdown.postprocess import PostSettings


@pytest.fixture(scope="module")
def val(tmp_path_factory: pytest.TempPathFactory) -> CocoPersons:
    root = tmp_path_factory.mktemp("boxes")
    return prepare_dataset(root / "dataset", DatasetParams(train_images=1, val_images=4),
                           progress=False)["val"]


def oracle(val: CocoPersons, neighbours: bool) -> ModelOutput:
    """Every GT person's box as a detection with its GT pose (a perfect model); with
    ``neighbours`` each box also holds the next person of its image, as a second cue's pose."""
    persons = val.training_persons()
    rows, poses = [], []
    for b, ann in enumerate(persons):
        x, y, w, h = ann["clean_bbox"]
        same = [p for p in persons if p["image_id"] == ann["image_id"]]
        cued = [ann] + ([same[(same.index(ann) + 1) % len(same)]] if neighbours else [])
        for c, person in enumerate(cued):
            rows.append((ann["image_id"], b, c if neighbours else -1, x, y, w, h, 1.0,
                         np.nan, np.nan, x + w / 2, y + h / 2, w * 1.25, h * 1.25))
            kpts = np.asarray(person["keypoints"], np.float64).reshape(-1, 3).copy()
            kpts[:, 2] = np.where(kpts[:, 2] > 0, 0.9 - 0.3 * c, 0.0)
            poses.append(kpts)
    protocols = {"report": 1.0, "cue-aware": 0.5} if neighbours else {"report": 1.0}
    return ModelOutput(np.stack(poses), pd.DataFrame(rows, columns=list(INDEX_COLUMNS)),
                       protocols)


def test_dropped_boxes_are_nested_and_seeded() -> None:
    ids = list(range(50))
    small, large = dropped_boxes(ids, 0.2, 3), dropped_boxes(ids, 0.4, 3)
    assert len(small) == 10 and len(large) == 20 and small <= large
    assert dropped_boxes(ids, 0.2, 3) == small and dropped_boxes(ids, 0.2, 4) != small
    assert dropped_boxes(ids, 0.0, 3) == set()


def test_neighbour_poses_find_persons_whose_box_is_gone(val: CocoPersons) -> None:
    outputs = {"baseline": oracle(val, False), "icrr": oracle(val, True)}
    frame = box_removal_study(val, outputs, [0.0, 0.5], 0, PostSettings.of(EvalParams(), val))
    assert list(frame["protocol"]) == ["report", "report", "cue-aware"] * 2
    full = frame[frame["fraction"] == 0.0]
    assert (full["boxless"] == 0).all() and full.loc[full["model"] == "baseline", "AP"].item() > 99
    half = frame[frame["fraction"] == 0.5].set_index(["model", "protocol"])
    assert half["boxless"].nunique() == 1 and half["boxless"].iloc[0] > 0
    assert half.loc[("baseline", "report"), "found"] == 0  # one pose per box: its own person
    assert half.loc[("icrr", "report"), "found"] > 0  # the neighbours' poses find them
    assert half.loc[("icrr", "report"), "AP"] > half.loc[("baseline", "report"), "AP"]
    boxes = outputs["baseline"].index.drop_duplicates("box_index")
    assert persons_found(val, boxes, []) == (0, 0)


def test_models_on_different_boxes_are_an_error(val: CocoPersons) -> None:
    one = oracle(val, False)
    fewer = ModelOutput(one.poses[1:], one.index.iloc[1:].reset_index(drop=True), one.protocols)
    with pytest.raises(ValueError, match="ran on different detector boxes"):
        box_removal_study(val, {"a": one, "b": fewer}, [0.0], 0,
                          PostSettings.of(EvalParams(), val))


def test_stage_names_a_missing_infer_output(val: CocoPersons, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, str(root / "stages/box_removal.py"), "--params",
         str(root / "params.yaml"), "--dataset", str(val.annotation_file.parents[1]),
         "--infer", str(tmp_path), "--out", str(tmp_path / "o.json"), "--csv",
         str(tmp_path / "o.csv"), "--plot", str(tmp_path / "o.png")],
        capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1 and out.stderr.startswith("error: ")
    assert "baseline" in out.stderr and "run infer@baseline" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "o.json").exists()
