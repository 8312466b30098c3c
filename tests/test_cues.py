"""Instance cues: peak extraction, per-box limits, oracle cues, cue quality, the cues stage."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from pycocotools import mask as mask_utils

from hintpose.bottomup.cues import (
    box_cues,
    cue_quality,
    cue_records,
    local_peaks,
    maps_to_peaks,
    oracle_cues,
    peak_map,
    resolve_joint,
    thin_peaks,
)
from hintpose.data.coco import CocoPersons, load_split, write_manifest
from hintpose.data.crowd import oracle_point
from hintpose.data.keypoints import person_category
from hintpose.data.params import DatasetParams, SyntheticConfig
from hintpose.data.prepare import prepare_dataset
from hintpose.errors import ConfigError
from hintpose.models.folder import save_network
from hintpose.models.multiposenet import MultiPoseNet
from hintpose.topdown.boxes import read_boxes, read_cues

ROOT = Path(__file__).resolve().parents[1]


def gaussian(h: int, w: int, x: float, y: float, peak: float, sigma: float = 1.5) -> np.ndarray:
    xs, ys = np.arange(w), np.arange(h)
    return peak * np.exp(-((xs[None] - x) ** 2 + (ys[:, None] - y) ** 2) / (2 * sigma**2))


# --------------------------------------------------------------------------- peaks


def test_local_peaks_finds_known_peaks_best_first() -> None:
    spots = [(10.3, 5.7, 0.9), (30.0, 20.2, 0.6), (22.6, 9.4, 0.35), (5.0, 25.0, 0.05)]
    heat = np.maximum.reduce([gaussian(32, 40, x, y, p) for x, y, p in spots])
    heat += np.random.default_rng(0).uniform(0, 0.01, heat.shape)  # a noisy floor
    found = local_peaks(torch.from_numpy(heat[None]).float(), threshold=0.1)[0]
    assert found.shape == (3, 3)  # the 0.05 peak and the noise are under the threshold
    for (x, y, p), row in zip(spots[:3], found, strict=False):
        assert row[0] == pytest.approx(x, abs=0.2) and row[1] == pytest.approx(y, abs=0.2)
        assert row[2] == pytest.approx(p, abs=0.05)  # the value at the peak pixel
    assert len(local_peaks(torch.from_numpy(heat[None]).float(), threshold=0.01)[0]) >= 4
    # a batch: every map has its own peaks; an empty map has none
    batch = torch.from_numpy(np.stack([heat, np.zeros_like(heat)])).float()
    assert [len(p) for p in local_peaks(batch, 0.1)] == [3, 0]


def test_peak_map_max_over_joints_or_one_joint() -> None:
    maps = torch.zeros(1, 3, 8, 8)  # two joints and the segmentation channel
    maps[0, 0, 2, 2], maps[0, 1, 5, 6], maps[0, 2, 4, 4] = 0.5, 0.8, 1.0
    assert peak_map(maps, None, 2)[0, 2, 2] == 0.5 and peak_map(maps, None, 2)[0, 5, 6] == 0.8
    assert peak_map(maps, None, 2)[0, 4, 4] == 0  # segmentation is no joint
    assert peak_map(maps, 1, 2)[0, 2, 2] == 0
    assert resolve_joint("max", ["a", "b"]) is None and resolve_joint("b", ["a", "b"]) == 1
    with pytest.raises(ConfigError, match="cues.joint must be 'max' or a keypoint name"):
        resolve_joint("neck", ["a", "b"])


def test_thinning_keeps_the_best_of_close_peaks() -> None:
    pts = np.array([[0, 0, 0.5], [3, 4, 0.9], [20, 0, 0.4], [21, 0, 0.3]], float)
    kept = thin_peaks(pts, 6.0)
    np.testing.assert_array_equal(kept[:, 2], [0.9, 0.4])
    assert len(thin_peaks(pts, 0.0)) == 4


def test_box_cues_respect_the_box_and_the_limit() -> None:
    peaks = np.array([[50, 50, 0.9], [10, 10, 0.8], [60, 55, 0.7], [55, 52, 0.6],
                      [40, 40, 0.5]], float)
    box = [40.0, 40.0, 25.0, 20.0]  # x 40..65, y 40..60 (edges count as inside)
    assert box_cues(peaks, box, 10) == [[50, 50, 0.9], [60, 55, 0.7], [55, 52, 0.6],
                                        [40, 40, 0.5]]
    assert box_cues(peaks, box, 2) == [[50, 50, 0.9], [60, 55, 0.7]]
    assert box_cues(peaks, [0, 0, 5, 5], 3) == []


def test_peaks_map_back_to_image_pixels() -> None:
    maps = torch.zeros(1, 18, 16, 20)
    maps[0, 3] = torch.from_numpy(gaussian(16, 20, 7.0, 4.0, 0.8)).float()
    maps[0, 9] = torch.from_numpy(gaussian(16, 20, 7.4, 4.0, 0.5)).float()  # close: thinned
    to_image = np.array([[[8.0, 0, 5.0], [0, 8.0, -3.0]]])  # heatmap -> image pixels
    peaks = maps_to_peaks(maps, to_image, None, 17, 0.1, min_distance=8.0)[0]
    assert peaks.shape == (1, 3)
    assert peaks[0, 0] == pytest.approx(61.0, abs=0.5) and peaks[0, 1] == pytest.approx(29.0,
                                                                                       abs=0.5)


# --------------------------------------------------------------------------- oracle, quality


def _rect(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def _person(aid: int, mask: np.ndarray, joints: list[tuple[float, float, int]]) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask))
    kpts = [v for j in joints for v in j] + [0] * (3 * (17 - len(joints)))
    return {"id": aid, "image_id": 1, "category_id": 1, "iscrowd": 0,
            "bbox": [float(v) for v in mask_utils.toBbox(rle)], "area": float(mask.sum()),
            "segmentation": {"size": list(mask.shape), "counts": rle["counts"].decode()},
            "keypoints": kpts, "num_keypoints": sum(1 for j in joints if j[2] > 0)}


@pytest.fixture()
def scene(tmp_path: Path) -> CocoPersons:
    """One 160x128 image: A (x 20-60) partly behind B (x 50-90); C far right."""
    h, w = 128, 160
    a = _rect(h, w, 20, 10, 60, 110)
    b = _rect(h, w, 50, 20, 90, 120)
    a[b > 0] = 0  # B is in front
    c = _rect(h, w, 120, 10, 150, 100)
    persons = [
        _person(1, a, [(30, 20, 2), (40, 50, 2), (55, 60, 1), (35, 100, 2)]),
        _person(2, b, [(70, 30, 2), (60, 70, 2), (80, 110, 2)]),
        _person(3, c, [(135, 50, 2)]),
    ]
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "1.jpg"), np.zeros((h, w, 3), np.uint8))
    data = {"images": [{"id": 1, "file_name": "1.jpg", "width": w, "height": h}],
            "annotations": persons, "categories": [person_category()]}
    (tmp_path / "val.json").write_text(json.dumps(data))
    write_manifest(tmp_path, {"val": ("val.json", "images")}, "synthetic")
    return load_split(tmp_path, "val")


def _owner(coco: CocoPersons, x: float, y: float) -> list[int]:
    """Ids of the persons whose mask holds the point."""
    from hintpose.bottomup.targets import person_mask

    return [a["id"] for a in coco.annotations if person_mask(a, 128, 160)[round(y), round(x)]]


def test_oracle_cues_land_on_the_right_persons(scene: CocoPersons) -> None:
    boxes = [{"image_id": 1, "bbox": [15.0, 5.0, 80.0, 116.0], "score": 0.9},  # A and B
             {"image_id": 1, "bbox": [20.0, 10.0, 40.0, 100.0], "score": 0.8},  # A's box
             {"image_id": 1, "bbox": [100.0, 0.0, 10.0, 10.0], "score": 0.5}]  # nobody
    cues = oracle_cues(scene, boxes, max_per_box=3)
    assert [len(c) for c in cues] == [2, 2, 0]
    owners = [[_owner(scene, x, y) for x, y, _ in c] for c in cues]
    assert sorted(owners[0]) == [[1], [2]]
    assert owners[1][0] == [1] and owners[1][1] == [2]  # A best (IoU 1), B overlaps less
    assert cues[1][0][2] == pytest.approx(1.0) and cues[1][1][2] < 0.5
    # B's only joint inside A's box is (60, 70); A's hidden joint (55, 60) is never chosen
    assert cues[1][1][:2] == [60.0, 70.0]
    assert oracle_cues(scene, boxes, max_per_box=1)[0] == cues[0][:1]
    # the most central visible joint inside the box
    assert oracle_point([0, 0, 2, 10, 10, 2, 12, 12, 2, 40, 40, 1], [0, 0, 50, 50]) == (10, 10)
    assert oracle_point([0, 0, 0, 60, 60, 2], [0, 0, 50, 50]) is None


def test_cue_quality(scene: CocoPersons) -> None:
    boxes = [{"image_id": 1, "bbox": [15.0, 5.0, 80.0, 116.0], "score": 0.9},
             {"image_id": 1, "bbox": [115.0, 5.0, 40.0, 100.0], "score": 0.8},
             {"image_id": 1, "bbox": [100.0, 0.0, 10.0, 10.0], "score": 0.5}]
    on_a, on_b, on_c, nowhere = [30, 20, 0.9], [70, 30, 0.8], [135, 50, 0.7], [5, 5, 0.2]
    q = cue_quality(scene, boxes, [[on_a, on_b], [on_c, nowhere], []])
    assert q["boxes"] == 3 and q["mean_cues_per_box"] == pytest.approx(4 / 3, abs=1e-4)
    assert q["center_fallback_fraction"] == pytest.approx(1 / 3, abs=1e-4)
    assert q["multi_person_boxes"] == 1 and q["multi_person_box_persons"] == 2
    assert q["multi_person_recall"] == 1.0 and q["recall"] == 1.0
    assert q["cues_on_a_person"] == 0.75
    q = cue_quality(scene, boxes, [[on_a, on_a], [nowhere], []])
    assert q["multi_person_recall"] == 0.5 and q["recall"] == pytest.approx(1 / 3, abs=1e-4)
    assert all(np.isfinite(v) for v in q.values())
    records = cue_records(boxes, [[on_a], [], []])
    assert records[0]["cues"] == [on_a] and records[1]["bbox"] == boxes[1]["bbox"]


# --------------------------------------------------------------------------- the stage


@pytest.fixture(scope="module")
def stage_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset, an untrained tiny MultiPoseNet and GT boxes as detections."""
    root = tmp_path_factory.mktemp("cues_stage")
    cfg = SyntheticConfig(image_width=128, image_height=96, persons_min=2, persons_max=4)
    splits = prepare_dataset(root / "dataset", DatasetParams(train_images=1, val_images=4,
                                                             synthetic=cfg), progress=False)
    val = splits["val"]
    config = {"depth": 10, "width": 8, "fpn_channels": 8, "head_channels": 8, "num_joints": 17,
              "input_width": 64, "input_height": 64, "sigma": 1.5, "visible_only": True,
              "keypoint_names": list(val.category["keypoints"]), "seed": 1}
    torch.manual_seed(0)
    save_network(root / "model", MultiPoseNet.from_config(config), config)
    dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"],
             "score": round(0.5 + 0.01 * i, 3)} for i, a in enumerate(val.annotations)]
    (root / "dets.json").write_text(json.dumps(dets))
    params = yaml.safe_load((ROOT / "params.smoke.yaml").read_text())
    params["cues"].update(threshold=0.0, max_per_box=2)
    params["runtime"].update(device="cpu", threads=1)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _stage_args(root: Path, dets: str = "dets.json", out: str = "cues") -> list[str]:
    return ["--params", str(root / "params.yaml"), "--dataset", str(root / "dataset"),
            "--detections", str(root / dets), "--model-dir", str(root / "model"),
            "--out", str(root / out), "--metrics", str(root / out / "metrics.json"),
            "--details", str(root / out / "details.json")]


def test_stage_cue_files_match_the_detections(stage_inputs: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root = stage_inputs
    monkeypatch.setattr(sys, "argv", ["cues.py", *_stage_args(root)])
    runpy.run_path(str(ROOT / "stages/cues.py"), run_name="__main__")
    coco = load_split(root / "dataset", "val")
    boxes = read_boxes(root / "dets.json", coco)
    for name in ("val.json", "oracle.json"):
        cues = read_cues(root / "cues" / name, boxes, "dets.json")  # aligned one to one
        assert len(cues) == len(boxes) and all(len(c) <= 2 for c in cues)
        for box, points in zip(boxes, cues, strict=True):
            x, y, w, h = box["bbox"]
            assert all(x <= px <= x + w and y <= py <= y + h for px, py, _ in points)
            assert [p[2] for p in points] == sorted((p[2] for p in points), reverse=True)
    oracle = read_cues(root / "cues" / "oracle.json", boxes, "dets.json")
    assert oracle == [r["cues"] for r in cue_records(boxes, oracle_cues(coco, boxes, 2))]
    details = json.loads((root / "cues" / "details.json").read_text())
    assert details["source"] == "multiposenet" and details["multiposenet_seconds"] >= 0
    for source in ("multiposenet", "gt"):
        assert details[source]["boxes"] == len(boxes)
        assert all(np.isfinite(v) for v in details[source].values())
    assert details["gt"]["recall"] > 0.9  # GT boxes with their own GT cues
    # the registered metrics: only the headline multi-person recall of each source
    metrics = json.loads((root / "cues" / "metrics.json").read_text())
    assert metrics == {"cue_recall": {source: details[source]["multi_person_recall"]
                                      for source in ("multiposenet", "gt")}}
    assert metrics["cue_recall"]["gt"] == cue_quality(
        coco, boxes, oracle_cues(coco, boxes, 2))["multi_person_recall"]

    # cues.source: gt puts the oracle cues into val.json
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["cues"]["source"] = "gt"
    (root / "params_gt.yaml").write_text(yaml.safe_dump(params))
    args = _stage_args(root, out="cues_gt")
    args[1] = str(root / "params_gt.yaml")
    monkeypatch.setattr(sys, "argv", ["cues.py", *args])
    runpy.run_path(str(ROOT / "stages/cues.py"), run_name="__main__")
    assert ((root / "cues_gt" / "val.json").read_text()
            == (root / "cues_gt" / "oracle.json").read_text())


def test_stage_refuses_a_detection_of_an_unknown_image(stage_inputs: Path) -> None:
    root = stage_inputs
    out = root / "cues_bad"
    out.mkdir()
    (out / "val.json").write_text("[]")
    dets = json.loads((root / "dets.json").read_text())
    dets[1]["image_id"] = 999
    (root / "bad.json").write_text(json.dumps(dets))
    proc = subprocess.run([sys.executable, str(ROOT / "stages/cues.py"),
                           *_stage_args(root, "bad.json", "cues_bad")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {root / 'bad.json'}: entry 1 refers to unknown image id 999 (not in "
        "person_keypoints_val.json)")
    assert (out / "val.json").read_text() == "[]"  # earlier output untouched
    assert not (out / "oracle.json").exists()
