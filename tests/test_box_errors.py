"""The detector's box errors against GT and the training crops drawn to match them
(hintpose.detection.box_errors, stage box_errors)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from hintpose.data.coco import load_coco, write_manifest
from hintpose.detection.box_errors import crop_errors, detection_errors, match, plot_box_errors

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
         "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
         "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]
XY = [(80, 20), (84, 17), (76, 17), (88, 19), (86, 19), (92, 35), (68, 35), (96, 52), (64, 52),
      (98, 68), (62, 68), (88, 70), (72, 70), (90, 92), (70, 92), (91, 112), (69, 112)]


@pytest.fixture
def crowd(tmp_path: Path) -> Path:
    """Two persons 16 px apart (each box holds the other's joints) and a far third one."""
    cv2.imwrite(str(tmp_path / "p.png"), np.full((120, 320, 3), 90, np.uint8))
    anns = []
    for i, dx in enumerate((0, 16, 200)):
        kp = [v for x, y in XY for v in (x + dx, y, 2)]
        anns.append({"id": i + 1, "image_id": 5, "category_id": 1, "bbox": [60 + dx, 15, 40, 100],
                     "area": 4000, "iscrowd": 0, "keypoints": kp, "num_keypoints": 17})
    data = {"images": [{"id": 5, "file_name": "p.png", "width": 320, "height": 120}],
            "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": NAMES, "skeleton": []}]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return tmp_path


def test_a_detection_is_measured_against_its_best_matching_person(crowd: Path) -> None:
    coco = load_coco(crowd / "ann.json", crowd, "decode")
    persons = coco.training_persons()
    exact = match(persons[2]["clean_bbox"], persons)
    assert exact["iou"] == pytest.approx(1.0) and exact["others"] == 0
    assert exact["dx"] == pytest.approx(0) and exact["log2h"] == pytest.approx(0)
    x, y, w, h = persons[2]["clean_bbox"]
    moved = match([x + 0.1 * w, y, 2 * w, h], persons)
    assert moved["dx"] == pytest.approx(0.6) and moved["log2w"] == pytest.approx(1.0)
    assert match(persons[0]["clean_bbox"], persons)["others"] == 1  # the neighbour is inside
    assert match([1, 1, 5, 5], [])["iou"] == 0.0
    boxes = [{"bbox": p["clean_bbox"], "image_id": 5, "score": 1.0} for p in persons]
    summary, matched = detection_errors(coco, [*boxes, {"bbox": [0, 0, 4, 4], "image_id": 5,
                                                          "score": 0.5}])
    assert summary["boxes"] == 4 and summary["matched"] == len(matched) == 3
    assert summary["dx_std"] == 0
    assert summary["share_with_another_person_inside"] == pytest.approx(2 / 3, abs=1e-4)
    assert summary["gt_boxes_share_with_another_person_inside"] == pytest.approx(2 / 3, abs=1e-4)


def test_training_crops_are_drawn_as_the_dataset_draws_them() -> None:
    """Centre offsets: N(0, std) clipped at 2 std; size: one factor for both sides; no jitter:
    centred crops."""
    rows = crop_errors((0.2, 0.05), 0.25, 4000, seed=1)
    dx, dy = np.array([r["dx"] for r in rows]), np.array([r["dy"] for r in rows])
    assert np.abs(dx).max() <= 0.4 + 1e-9 and np.abs(dy).max() <= 0.1 + 1e-9
    assert 0.17 < dx.std() < 0.2 and 0.04 < dy.std() < 0.05
    assert all(r["log2w"] == r["log2h"] for r in rows)
    assert max(r["log2w"] for r in rows) == pytest.approx(np.log2(1.25))
    still = crop_errors((0.0, 0.0), 0.25, 50)
    assert all(r["dx"] == 0 and r["dy"] == 0 for r in still)
    assert crop_errors((0.2, 0.05), 0.25, 50, seed=1) == rows[:50]


def test_stage_writes_the_statistics_and_names_a_bad_detections_file(crowd: Path,
                                                                     tmp_path: Path) -> None:
    ann = json.loads((crowd / "ann.json").read_text())
    write_manifest(crowd, {"val": (str(crowd / "ann.json"), str(crowd))}, "synthetic")
    dets = tmp_path / "det.json"
    dets.write_text(json.dumps([{"image_id": 5, "category_id": 1, "bbox": a["bbox"],
                                 "score": 0.9} for a in ann["annotations"]]))
    out, plot = tmp_path / "errors.json", tmp_path / "errors.png"
    cmd = [sys.executable, str(ROOT / "stages/box_errors.py"), "--params",
           str(ROOT / "params.yaml"), "--dataset", str(crowd), "--detections", str(dets),
           "--out", str(out), "--plot", str(plot)]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    stats = json.loads(out.read_text())
    assert stats["detector"]["matched"] == 3 and stats["crops"]["pretrain"]["dx_std"] == 0
    assert stats["crops"]["train"]["center_jitter"] == [0.14, 0.06] and plot.stat().st_size
    dets.write_text(json.dumps([{"image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1],
                                 "score": 1}]))
    out.unlink()
    bad = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert bad.returncode != 0 and str(dets) in bad.stderr and "99" in bad.stderr
    assert not out.exists()


def test_figure_is_a_png(tmp_path: Path) -> None:
    rows = crop_errors((0.1, 0.05), 0.25, 200)
    plot_box_errors(rows, {"fine-tune": rows}, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
