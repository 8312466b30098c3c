"""End to end: the DVC pipeline on the smoke preset, in a temporary git + DVC clone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path, env: dict[str, str], check: bool = True):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        out = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        raise AssertionError(f"{' '.join(cmd)} failed:\n{out}")
    return proc


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The project's files (tracked or not ignored), smoke params, a fresh git + DVC repo."""
    dest = tmp_path_factory.mktemp("clone")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    shutil.copy2(ROOT / "params.smoke.yaml", dest / "params.yaml")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DVC_ROOT", None)
    run(["git", "init", "-q"], dest, env)
    run(["git", "config", "user.email", "test@hintpose.local"], dest, env)
    run(["git", "config", "user.name", "hintpose test"], dest, env)
    run(["git", "add", "-A"], dest, env)
    run(["git", "commit", "-qm", "smoke"], dest, env)
    return dest, env


@pytest.mark.slow
def test_prepare_stage(clone: tuple[Path, dict[str, str]]) -> None:
    repo, env = clone
    run([sys.executable, "-m", "dvc", "repro", "prepare"], repo, env)
    stats = json.loads((repo / "metrics/dataset.json").read_text())
    assert stats["val"]["images"] > 0 and stats["train"]["persons"] > 0
    assert (repo / "metrics/plots/dataset_samples.png").stat().st_size > 10_000
    for split in ("train", "val"):
        data = json.loads((repo / f"data/dataset/annotations/person_keypoints_{split}.json")
                          .read_text())
        assert len(data["images"]) == stats[split]["images"]
    # nothing is stale afterwards, and a second repro is a no-op
    assert run([sys.executable, "-m", "dvc", "status", "-q", "prepare"], repo, env,
               check=False).returncode == 0
    again = run([sys.executable, "-m", "dvc", "repro", "prepare"], repo, env)
    assert "didn't change, skipping" in again.stdout


@pytest.mark.slow
def test_bad_param_stops_the_stage_and_keeps_outputs(clone: tuple[Path, dict[str, str]]) -> None:
    repo, env = clone
    run([sys.executable, "-m", "dvc", "repro", "prepare"], repo, env)
    before = (repo / "data/dataset/annotations/person_keypoints_val.json").read_bytes()
    params = (repo / "params.yaml").read_text()
    try:
        (repo / "params.yaml").write_text(params.replace("dataset:", "dataset:\n  bogus: 1", 1))
        proc = run([sys.executable, "stages/prepare.py"], repo, env, check=False)
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines()[-1] == (
            "error: params.yaml: dataset.bogus is not a known key (known: kind, seed, "
            "train_images, val_images, synthetic, coco)")
        assert (repo / "data/dataset/annotations/person_keypoints_val.json").read_bytes() == before
    finally:
        (repo / "params.yaml").write_text(params)


MODELS = ("baseline", "ic_a", "ic_b", "rr_a", "rr_b", "icrr_a", "icrr_b")


@pytest.mark.slow
def test_train_all_models_and_rerun_only_the_edited_one(clone) -> None:
    repo, env = clone
    run([sys.executable, "-m", "dvc", "repro"], repo, env)
    for name in MODELS:
        assert (repo / f"data/models/{name}/model.pt").is_file()
        config = json.loads((repo / f"data/models/{name}/model.json").read_text())
        assert config["recurrent"] == name.startswith(("rr", "icrr"))
        assert config["instance_cue"] == name.startswith("ic")
        metrics = json.loads((repo / f"metrics/train/{name}.json").read_text())
        assert metrics["epochs"] == 1
        header = (repo / f"metrics/train/{name}.tsv").read_text().splitlines()[0].split("\t")
        assert "val_loss" in header and ("train_loss_hop3" in header) == config["recurrent"]
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "trained"], repo, env)
    # dvc sees the results, and editing one model's entry re-runs only that model
    shown = run([sys.executable, "-m", "dvc", "metrics", "show"], repo, env).stdout
    assert "metrics/train/icrr_b.json" in shown
    params = (repo / "params.yaml").read_text()
    edited = params.replace("ic_a: {instance_cue: true, recurrent: false, seed: 1}",
                            "ic_a: {instance_cue: true, recurrent: false, seed: 3}")
    assert edited != params
    (repo / "params.yaml").write_text(edited)
    status = run([sys.executable, "-m", "dvc", "status"], repo, env).stdout
    stale = {line.strip().rstrip(":") for line in status.splitlines()
             if line and not line.startswith(("\t", " "))}
    assert stale == {"train@ic_a", "score"}, status  # score reads the models' settings
    (repo / "params.yaml").write_text(params)


@pytest.mark.slow
def test_infer_and_score_all_models(clone) -> None:
    repo, env = clone
    run([sys.executable, "-m", "dvc", "repro", "score"], repo, env)
    detection = json.loads((repo / "metrics/detection.json").read_text())
    assert detection["detections_per_image"] > 0 and 0 <= detection["all_persons"]["AP"] <= 1
    detections = json.loads((repo / "data/detections/val.json").read_text())
    assert len(detections) == round(detection["detections_per_image"] * detection["images"])
    log = (repo / "metrics/detector/train.tsv").read_text().splitlines()
    assert log[0].startswith("epoch\tloss") and len(log) == 1 + 4  # the smoke preset's epochs
    for name in MODELS:
        infer = json.loads((repo / f"metrics/infer/{name}.json").read_text())
        for boxes in ("det", "gt"):
            assert infer[boxes]["instances"] >= infer[boxes]["boxes"] > 0
            assert (repo / f"data/infer/{name}/heatmaps_{boxes}.npy").is_file()
            scores = json.loads((repo / f"metrics/scores/{name}_{boxes}.json").read_text())
            assert 0.0 <= scores["AP"] <= 1.0 and "AP_hard" in scores
        if infer["instance_cue"] and not infer["cues_file"]:
            assert infer["det"]["cue_fallbacks"] == infer["det"]["boxes"]
    lines = (repo / "metrics/results.csv").read_text().splitlines()
    assert lines[0] == "name,boxes,AP,AP50,AP75,APm,APl,AR,AP_easy,AP_medium,AP_hard"
    assert len(lines) == 1 + 2 * len(MODELS)
    table = (repo / "metrics/results_table.md").read_text()
    assert "| I.C.+R.R. | " in table and " ± " in table
    assert (repo / "metrics/plots/ap_by_crowd.png").stat().st_size > 1000
    shown = run([sys.executable, "-m", "dvc", "metrics", "show"], repo, env).stdout
    assert "metrics/scores/icrr_b_det.json" in shown and "metrics/infer/ic_a.json" in shown
    # an eval setting re-runs inference of every model, nothing upstream
    params = (repo / "params.yaml").read_text()
    edited = params.replace("nms_thr: 0.9 ", "nms_thr: 0.8 ")
    assert edited != params
    (repo / "params.yaml").write_text(edited)
    try:
        status = run([sys.executable, "-m", "dvc", "status"], repo, env).stdout
        stale = {line.strip().rstrip(":") for line in status.splitlines()
                 if line and not line.startswith(("\t", " "))}
        assert stale == {f"infer@{name}" for name in MODELS}, status
    finally:
        (repo / "params.yaml").write_text(params)
