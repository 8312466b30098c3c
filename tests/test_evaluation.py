"""COCO keypoint scoring reproduces pycocotools' peer numbers and handles bad results."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hintpose.errors import DataError
from hintpose.scoring.evaluation import (
    STAT_NAMES,
    coco_keypoint_eval,
    crowd_level_eval,
)

PEER = [0.5048844884488449, 0.7227722772277227, 0.6336633663366337, 0.46633663366336636,
        0.7504950495049505, 0.5181818181818182, 0.7272727272727273, 0.6363636363636364,
        0.4666666666666666, 0.75]


def test_reproduces_peer_stats_with_crowd_region(annotations: Path) -> None:
    folder = annotations / "faster_coco_eval_keypoints"
    stats = coco_keypoint_eval(folder / "gt_dataset.json", folder / "dt_dataset.json")
    assert list(stats) == list(STAT_NAMES)
    assert [stats[k] for k in STAT_NAMES] == pytest.approx(PEER, abs=1e-12)


def _pycocotools_stats(gt_file: Path, dt_file: Path) -> list[float]:
    """The ten stats straight from pycocotools (COCO sigmas, areas as given)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        ev = COCOeval(gt, gt.loadRes(str(dt_file)), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


def test_real_predictions_match_pycocotools(annotations: Path) -> None:
    x = annotations / "xtcocoapi"
    stats = coco_keypoint_eval(x / "example_coco_val.json", x / "example_coco_preds.json")
    expected = _pycocotools_stats(x / "example_coco_val.json", x / "example_coco_preds.json")
    assert [stats[k] for k in STAT_NAMES] == pytest.approx(expected, abs=1e-12)
    # xtcocoapi's HRNet-style predictions on 4 COCO val images (pycocotools 2.0.x)
    assert stats["AP"] == pytest.approx(0.8608896054440609, abs=1e-9)
    assert stats["AR"] == pytest.approx(0.875, abs=1e-9)
    # a subset of the images scores only those
    one = coco_keypoint_eval(x / "example_coco_val.json", x / "example_coco_preds.json",
                             image_ids=[785])
    assert one["AP"] != stats["AP"] and 0.0 < one["AP"] <= 1.0


def test_crowdpose_sigmas_and_crowd_levels(annotations: Path) -> None:
    """CrowdPose (14 joints, no area): its own sigmas and box-based areas; crowd levels split at
    the code's thresholds 0.2 and 0.8 of the images' crowdIndex (0.0, 0.76, 0.76, 0.82)."""
    x = annotations / "xtcocoapi"
    gt, dt = x / "example_crowdpose_val.json", x / "example_crowdpose_preds.json"
    crowd = coco_keypoint_eval(gt, dt)
    assert crowd["AP"] == pytest.approx(0.7877215935879303, abs=1e-9)
    assert crowd["AP50"] == pytest.approx(0.9881188118811886, abs=1e-9)
    assert crowd["AR"] == pytest.approx(0.8222222222222223, abs=1e-9)
    # 14 joints: CrowdPose's sigmas are the default, and the sigmas matter
    crowdpose_sigmas = np.array([.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89,
                                 .79, .79]) / 10  # crowdposetools' own
    assert coco_keypoint_eval(gt, dt, sigmas=crowdpose_sigmas) == crowd
    tight = coco_keypoint_eval(gt, dt, sigmas=np.full(14, 0.025))
    assert tight["AP"] < crowd["AP"] - 0.05

    levels = crowd_level_eval(gt, dt)
    assert list(levels) == ["easy", "medium", "hard"]
    members = {"easy": [115625], "medium": [104173, 114203], "hard": [107292]}
    for name, ids in members.items():
        assert levels[name] == coco_keypoint_eval(gt, dt, image_ids=ids), name
    assert levels["easy"]["AP"] == pytest.approx(1.0)
    assert levels["medium"]["AP"] == pytest.approx(0.9801980198019802, abs=1e-9)
    assert levels["hard"]["AP"] == pytest.approx(0.4115511551155115, abs=1e-9)


def test_a_level_without_images_is_none(annotations: Path) -> None:
    data = json.loads((annotations / "xtcocoapi/example_crowdpose_val.json").read_text())
    data["images"] = [im for im in data["images"] if im["crowdIndex"] < 0.8]
    kept = {im["id"] for im in data["images"]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in kept]
    preds = json.loads((annotations / "xtcocoapi/example_crowdpose_preds.json").read_text())
    levels = crowd_level_eval(data, [p for p in preds if p["image_id"] in kept])
    assert levels["hard"] is None
    assert levels["easy"]["AP"] == pytest.approx(1.0)


def test_empty_results_warn_and_score_zero(annotations: Path) -> None:
    with pytest.warns(UserWarning, match="no keypoint results"):
        stats = coco_keypoint_eval(annotations / "xtcocoapi/example_coco_val.json", [])
    assert stats == dict.fromkeys(STAT_NAMES, 0.0)


def test_unknown_image_ids_are_an_error(annotations: Path, tmp_path: Path) -> None:
    dets = json.loads((annotations / "xtcocoapi/example_coco_preds.json").read_text())
    dets[0]["image_id"] = 424242
    with pytest.raises(DataError,
                       match="entry 0 refers to unknown image id 424242 .not in the ground truth"):
        coco_keypoint_eval(annotations / "xtcocoapi/example_coco_val.json", dets)
    bad = tmp_path / "r.json"
    bad.write_text("[{")
    with pytest.raises(DataError, match="r.json: malformed JSON"):
        coco_keypoint_eval(annotations / "xtcocoapi/example_coco_val.json", bad)
