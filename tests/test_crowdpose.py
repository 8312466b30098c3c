"""CrowdPose (14 joints) end to end: its OKS sigmas and skeleton come from the dataset, a model
of other joints is refused with one message, and the smoke DAG runs through every stage on a
small CrowdPose-format dataset (synthetic people converted to CrowdPose's joints, plus the real
CrowdPose sample when ../shared/realdata is there)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REALDATA

from hintpose.data.coco import load_coco
from hintpose.data.keypoints import COCO_SIGMAS, keypoint_sigmas, skeleton_of
from hintpose.data.params import DatasetParams, SyntheticConfig
from hintpose.data.prepare import prepare_dataset
from hintpose.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
CROWDPOSE_JSON = ROOT / "tests" / "data" / "realdata" / "mmpose_crowdpose" / "test_crowdpose.json"
#: CrowdPose's evaluation sigmas (crowdposetools), in its joint order.
CROWDPOSE_SIGMAS = np.array([.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89,
                             .79, .79]) / 10


def crowdpose_category() -> dict:
    return json.loads(CROWDPOSE_JSON.read_text())["categories"][0]


def test_sigmas_and_skeleton_come_from_the_category() -> None:
    category = crowdpose_category()
    np.testing.assert_array_equal(keypoint_sigmas(category), CROWDPOSE_SIGMAS)
    # its file carries COCO's 17-joint skeleton; the drawn one is CrowdPose's, by name
    skeleton = skeleton_of(category)
    assert all(1 <= a <= 14 and 1 <= b <= 14 for a, b in skeleton)
    names = category["keypoints"]
    assert (names.index("head") + 1, names.index("neck") + 1) in skeleton
    coco17 = {"keypoints": ["nose", "left_eye", "right_eye", "left_ear", "right_ear",
                            "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
                            "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                            "right_knee", "left_ankle", "right_ankle"]}
    np.testing.assert_array_equal(keypoint_sigmas(coco17), COCO_SIGMAS)
    with pytest.raises(DataError, match="no OKS sigma known for keypoint.*tail"):
        keypoint_sigmas({"keypoints": ["nose", "tail"]}, "x.json")
    assert keypoint_sigmas({"keypoints": ["tail"], "sigmas": [0.05]}).tolist() == [0.05]


def test_a_model_of_other_joints_is_refused(tmp_path: Path) -> None:
    coco = load_coco(CROWDPOSE_JSON, tmp_path, check_images="none")
    assert coco.num_joints == 14
    assert all(a["area"] > 0 for a in coco.annotations)  # CrowdPose has no area: box x 0.53
    with pytest.raises(DataError, match=r"models/x: the model predicts 17 joints .* has 14"):
        coco.check_keypoints([f"j{i}" for i in range(17)], "models/x")
    coco.check_keypoints(coco.category["keypoints"], "models/x")


def to_crowdpose(ann: dict) -> dict:
    """A synthetic COCO person as CrowdPose annotates: 12 body joints, head and neck (the mean
    of the shoulders), no area."""
    k = np.asarray(ann["keypoints"], float).reshape(17, 3)
    head = k[0] if k[0, 2] > 0 else np.zeros(3)
    shoulders = k[5:7]
    neck = (np.r_[shoulders[:, :2].mean(0), shoulders[:, 2].min()]
            if (shoulders[:, 2] > 0).all() else np.zeros(3))
    joints = np.vstack([k[5:17], head, neck])
    out = {key: v for key, v in ann.items() if key != "area"}
    return {**out, "keypoints": joints.round(2).ravel().tolist(),
            "num_keypoints": int((joints[:, 2] > 0).sum())}


def crowdpose_dataset(folder: Path) -> None:
    """crowdpose_{train,val}.json and images/ in ``folder``."""
    splits = prepare_dataset(folder / "synthetic", DatasetParams(
        train_images=24, val_images=8, synthetic=SyntheticConfig()), progress=False)
    real = REALDATA / "mmpose_crowdpose"
    (folder / "images").mkdir()
    for split in ("train", "val"):
        data = json.loads(splits[split].annotation_file.read_text())
        for image in data["images"]:
            name = image["file_name"].replace("/", "_")
            shutil.copy2(splits[split].image_root / image["file_name"], folder / "images" / name)
            image["file_name"] = name
        data["annotations"] = [to_crowdpose(a) for a in data["annotations"]]
        data["categories"] = [crowdpose_category()]
        if split == "val" and (real / "106848.jpg").is_file():
            gt = json.loads(CROWDPOSE_JSON.read_text())
            for image in gt["images"]:
                shutil.copy2(real / image["file_name"], folder / "images" / image["file_name"])
            data["images"] += gt["images"]
            data["annotations"] += gt["annotations"]
        (folder / f"crowdpose_{split}.json").write_text(json.dumps(data))
    shutil.rmtree(folder / "synthetic")


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


@pytest.mark.slow
def test_smoke_pipeline_on_crowdpose(tmp_path: Path) -> None:
    data = tmp_path / "crowdpose"
    crowdpose_dataset(data)
    repo = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file() and not name.startswith("metrics/"):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    (repo / "dvc.lock").unlink(missing_ok=True)
    params = yaml.safe_load((ROOT / "params.smoke.yaml").read_text())
    params["dataset"]["kind"] = "coco"
    params["dataset"]["coco"].update(
        train_annotations=str(data / "crowdpose_train.json"), train_images=str(data / "images"),
        val_annotations=str(data / "crowdpose_val.json"), val_images=str(data / "images"))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DVC_ROOT", None)
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@hintpose.local"],
                ["git", "config", "user.name", "t"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "crowdpose"]):
        run(cmd, repo, env)
    out = run([sys.executable, "-m", "dvc", "repro"], repo, env).stdout
    stages = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert {"prepare", "train_detector", "detect", "cues", "pretrain", "train@icrr_a",
            "infer@icrr_a", "ensemble", "refine", "score", "report"} <= stages
    model = json.loads((repo / "data/models/icrr_a/model.json").read_text())
    assert model["num_joints"] == 14 and model["keypoint_names"][-2:] == ["head", "neck"]
    summary = json.loads((repo / "metrics/summary.json").read_text())
    for method in ("baseline", "icrr", "ensemble", "ensemble_posefix"):
        assert all(math.isfinite(v) for v in summary["AP"][method].values())
    rows = (repo / "metrics/results.csv").read_text().splitlines()
    assert rows[0].startswith("name,boxes,AP,") and "AP_hard" in rows[0]
    detections = json.loads((repo / "data/infer/icrr_a/results_det.json").read_text())
    assert detections and all(len(r["keypoints"]) == 3 * 14 for r in detections)
    assert (repo / "metrics/plots/report/figure3_instance_cues.png").stat().st_size > 5000
