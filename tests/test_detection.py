"""Person detection on MMDetection: a short real training run, inference, the lab path, errors."""

from __future__ import annotations

import builtins
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hintpose.config import DetectorParams, DetectorTrainParams
from hintpose.data.coco import load_coco
from hintpose.data.params import DatasetParams, SyntheticConfig
from hintpose.data.prepare import prepare_dataset
from hintpose.detection.config import (
    build_model,
    class_names,
    load_config,
    load_detector,
    person_label,
    read_checkpoint,
    require_mmdet,
    save_detector,
    training_config,
)
from hintpose.detection.detect import coco_box_eval, detect_images
from hintpose.detection.train import train_detector, with_runtime
from hintpose.errors import ConfigError, DataError
from hintpose.runtime import bf16_supported
from hintpose.trainlog import read_log, write_log

ROOT = Path(__file__).resolve().parents[1]
HTC = "htc/htc_x101-64x4d-dconv-c3-c5_fpn_ms-400-1400-16xb1-20e_coco.py"
# The repository's detector, half as wide, so a test trains it in seconds.
TINY = f"""_base_ = {str(ROOT / 'configs/detector/fcos_person.py')!r}
model = dict(backbone=dict(base_channels=8), neck=dict(in_channels=[8, 16, 32, 64],
             out_channels=32), bbox_head=dict(in_channels=32, feat_channels=32))
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("det") / "dataset"
    params = DatasetParams(train_images=8, val_images=4, synthetic=SyntheticConfig())
    return prepare_dataset(root, params, progress=False)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("cfg") / "tiny_person.py"
    path.write_text(TINY)
    return str(path)


@pytest.fixture(scope="module")
def trained(dataset, tiny_config: str, tmp_path_factory: pytest.TempPathFactory):
    """A detector folder after a few real training iterations, trained as the stage trains
    (bf16 autocast where the CPU has fast bf16 kernels, channels_last)."""
    params = DetectorParams(config=tiny_config, train=DetectorTrainParams(
        epochs=2, batch_size=4, lr=0.002, workers=0, val_interval=1, val_images=0))
    work = tmp_path_factory.mktemp("work")
    cfg = training_config(load_config(tiny_config), dataset["train"], dataset["val"], params,
                          work)
    result = train_detector(with_runtime(cfg, bf16_supported(torch.device("cpu")), True))
    folder = tmp_path_factory.mktemp("detector")
    save_detector(folder, result.config, {"weights": "trained", "classes": ["person"],
                                          "person_label": 0}, result.model)
    return folder, result


def test_training_logs_each_epoch_and_saves_loadable_weights(trained, tmp_path: Path) -> None:
    folder, result = trained
    assert [r["epoch"] for r in result.log] == [1.0, 2.0]
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["val_AP"]) for r in result.log)
    assert all(r["seconds"] > 0 for r in result.log)  # the learning curve's time axis
    assert result.model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert result.config.optim_wrapper.type == (
        "HintposeBf16OptimWrapper" if bf16_supported(torch.device("cpu")) else "OptimWrapper")
    state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    assert state.keys() == result.model.state_dict().keys()
    write_log(tmp_path / "log", result.log)  # what the train_detector stage writes
    log = read_log(tmp_path / "log")
    assert log["epoch"].tolist() == [1, 2] and {"loss", "val_AP", "val_AP50"} <= set(log.columns)
    assert log["loss"].tolist() == pytest.approx([r["loss"] for r in result.log])


def test_detections_are_valid_coco_results(trained, dataset) -> None:
    model, label = load_detector(trained[0], torch.device("cpu"))
    val = dataset["val"]
    images = [(i, val.image_path(i)) for i in sorted(val.images)]
    dets = detect_images(model, images, label, batch_size=3, score_thr=0.0, min_box_size=8)
    assert dets, "an untrained-ish detector still returns its top boxes at score_thr 0"
    for d in dets:
        img = val.images[d["image_id"]]
        x, y, w, h = d["bbox"]
        assert w >= 8 and h >= 8 and 0 <= d["score"] <= 1 and d["category_id"] == 1
        assert -1 <= x <= img["width"] + 1 and -1 <= y <= img["height"] + 1
    stats = coco_box_eval(val.data, dets)
    assert set(stats) >= {"AP", "AP50", "AR"} and all(0 <= v <= 1 for v in stats.values())
    strict = detect_images(model, images, label, batch_size=4, score_thr=0.0, min_box_size=40)
    assert all(min(d["bbox"][2:]) >= 40 for d in strict) and len(strict) <= len(dets)


def test_detects_on_real_coco_photos(trained, realdata: Path) -> None:
    coco = load_coco(realdata / "mmpose_coco/test_coco.json", realdata / "mmpose_coco")
    model, label = load_detector(trained[0], torch.device("cpu"))
    images = [(i, coco.image_path(i)) for i in sorted(coco.images)]
    dets = detect_images(model, images, label, batch_size=2, score_thr=0.0, min_box_size=0)
    assert {d["image_id"] for d in dets} == set(coco.images)
    for d in dets:
        img = coco.images[d["image_id"]]  # boxes are in the photo's own pixels, not 320x256
        assert d["bbox"][0] + d["bbox"][2] <= img["width"] + 1
        assert d["bbox"][1] + d["bbox"][3] <= img["height"] + 1
    json.dumps(dets)  # plain JSON types


def test_box_eval_ignores_small_persons_on_request() -> None:
    gt = {"images": [{"id": 1, "width": 100, "height": 100}],
          "categories": [{"id": 1, "name": "person"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 80],
                           "area": 4000, "iscrowd": 0},
                          {"id": 2, "image_id": 1, "category_id": 1, "bbox": [60, 0, 10, 20],
                           "area": 200, "iscrowd": 0}]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 80], "score": 0.9}]
    assert coco_box_eval(gt, dets)["AR"] == pytest.approx(0.5)
    assert coco_box_eval(gt, dets, ignore_below=32)["AP"] == pytest.approx(1.0)
    assert coco_box_eval(gt, [])["AP"] == 0.0


def test_lab_htc_config_builds_on_cpu_and_has_person_first() -> None:
    cfg = load_config(HTC)  # shipped inside mmdet; "mmdet::" prefix optional
    model = build_model(cfg, None, HTC)
    assert sum(p.numel() for p in model.parameters()) > 50e6
    assert person_label(class_names(cfg), HTC) == 0


def test_external_checkpoint_is_checked_against_its_config(trained, tiny_config, tmp_path):
    cfg = load_config(tiny_config)
    ckpt = tmp_path / "det.pth"
    state = torch.load(trained[0] / "model.pt", weights_only=True)
    torch.save({"state_dict": state, "meta": {"dataset_meta": {"classes": ["person"]}}}, ckpt)
    loaded, meta = read_checkpoint(ckpt)
    build_model(cfg, loaded, str(ckpt))  # matches
    assert class_names(cfg, meta) == ["person"]
    wrong = load_config(str(ROOT / "configs/detector/fcos_person.py"))
    with pytest.raises(ConfigError, match="does not match the config"):
        build_model(wrong, loaded, str(ckpt))
    with pytest.raises(ConfigError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="junk.pth"):
        read_checkpoint(tmp_path / "junk.pth")


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such MMDetection config 'nope/missing.py'"):
        load_config("nope/missing.py")
    broken = tmp_path / "broken.py"
    broken.write_text("model = dict(\n")
    with pytest.raises(ConfigError, match="broken.py: not a readable MMDetection config"):
        load_config(str(broken))
    with pytest.raises(ConfigError, match="no person class .*car, dog"):
        person_label(["car", "dog"], "cars.py")
    cars = tmp_path / "cars.py"
    cars.write_text("test_dataloader = dict(dataset=dict(metainfo=dict(classes=('car',))))\n")
    assert class_names(load_config(str(cars))) == ["car"]


def test_incomplete_detector_folder_is_named(trained, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no detector.json"):
        load_detector(tmp_path, torch.device("cpu"))
    for name in ("config.py", "detector.json"):
        (tmp_path / name).write_bytes((trained[0] / name).read_bytes())
    with pytest.raises(DataError, match="model.pt: cannot load the detector weights"):
        load_detector(tmp_path, torch.device("cpu"))


def test_undecodable_image_is_named(trained, tmp_path: Path) -> None:
    model, label = load_detector(trained[0], torch.device("cpu"))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg: image does not decode"):
        detect_images(model, [(1, bad)], label, 1, 0.0, 0)


def test_missing_mmcv_build_names_the_setup_command(monkeypatch) -> None:
    real_import = builtins.__import__

    def no_mmcv_ops(name, *args, **kwargs):
        if name.startswith("mmcv.ops"):
            raise ImportError("No module named 'mmcv._ext'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mmcv_ops)
    with pytest.raises(ConfigError, match="scripts/setup.sh"):
        require_mmdet()


def test_detect_stage_refuses_an_empty_result(trained, dataset, tmp_path: Path) -> None:
    ds_dir = dataset["val"].annotation_file.parents[1]
    params = tmp_path / "params.yaml"
    params.write_text("detector:\n  score_thr: 1.0\n")
    out = tmp_path / "val.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "stages/detect.py"), "--params", str(params),
         "--dataset", str(ds_dir), "--detector", str(trained[0]), "--out", str(out),
         "--metrics", str(tmp_path / "m.json"), "--details", str(tmp_path / "d.json")],
        capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1
    assert "error: the detector found no person in any of the 4 val images" in proc.stderr
    assert not out.exists() and not (tmp_path / "m.json").exists()


def test_detect_stage_writes_the_filtered_boxes_headline_and_details(trained, dataset,
                                                                     tmp_path: Path) -> None:
    """detect applies the pipeline's one box filter (detector.score_thr, min_box_size); the
    registered metrics are box AP and AR only, the rest goes to --details."""
    ds_dir = dataset["val"].annotation_file.parents[1]
    params = tmp_path / "params.yaml"
    params.write_text("detector:\n  score_thr: 0.0\n  min_box_size: 12\nruntime:\n  device: cpu\n")
    out, metrics, details = tmp_path / "val.json", tmp_path / "m.json", tmp_path / "d.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "stages/detect.py"), "--params", str(params),
         "--dataset", str(ds_dir), "--detector", str(trained[0]), "--out", str(out),
         "--metrics", str(metrics), "--details", str(details)],
        capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dets = json.loads(out.read_text())
    assert dets and all(min(d["bbox"][2:]) >= 12 and d["score"] >= 0.0 for d in dets)
    info = json.loads(details.read_text())
    assert info["images"] == 4 and info["detections_per_image"] == pytest.approx(
        len(dets) / 4, abs=1e-3)
    assert info["all_persons"] == pytest.approx(coco_box_eval(dataset["val"].data, dets))
    assert "persons_min12px" in info
    assert json.loads(metrics.read_text()) == {"box_AP": round(info["all_persons"]["AP"], 4),
                                               "box_AR": round(info["all_persons"]["AR"], 4)}
