"""COCO keypoint scoring reproduces pycocotools' peer numbers and handles bad results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hintpose.errors import DataError
from hintpose.evaluation import STAT_NAMES, coco_keypoint_eval, crowd_level_eval

PEER = [0.5048844884488449, 0.7227722772277227, 0.6336633663366337, 0.46633663366336636,
        0.7504950495049505, 0.5181818181818182, 0.7272727272727273, 0.6363636363636364,
        0.4666666666666666, 0.75]


def test_reproduces_peer_stats_with_crowd_region(realdata: Path) -> None:
    folder = realdata / "faster_coco_eval_keypoints"
    stats = coco_keypoint_eval(folder / "gt_dataset.json", folder / "dt_dataset.json")
    assert list(stats) == list(STAT_NAMES)
    assert [stats[k] for k in STAT_NAMES] == pytest.approx(PEER, abs=1e-12)


def test_real_predictions_and_crowdpose(realdata: Path) -> None:
    x = realdata / "xtcocoapi"
    coco = coco_keypoint_eval(x / "example_coco_val.json", x / "example_coco_preds.json")
    assert 0.3 < coco["AP"] <= 1.0
    crowd = coco_keypoint_eval(x / "example_crowdpose_val.json", x / "example_crowdpose_preds.json")
    assert 0.0 < crowd["AP"] <= 1.0
    levels = crowd_level_eval(x / "example_crowdpose_val.json", x / "example_crowdpose_preds.json")
    assert levels["easy"] is not None and levels["hard"] is not None


def test_empty_results_warn_and_score_zero(realdata: Path) -> None:
    with pytest.warns(UserWarning, match="no keypoint results"):
        stats = coco_keypoint_eval(realdata / "xtcocoapi/example_coco_val.json", [])
    assert stats["AP"] == 0.0


def test_unknown_image_ids_are_an_error(realdata: Path, tmp_path: Path) -> None:
    dets = json.loads((realdata / "xtcocoapi/example_coco_preds.json").read_text())
    dets[0]["image_id"] = 424242
    with pytest.raises(DataError, match=r"image ids not in the ground truth: \[424242\]"):
        coco_keypoint_eval(realdata / "xtcocoapi/example_coco_val.json", dets)
    bad = tmp_path / "r.json"
    bad.write_text("[{")
    with pytest.raises(DataError, match="r.json: malformed JSON"):
        coco_keypoint_eval(realdata / "xtcocoapi/example_coco_val.json", bad)
