"""End to end: the DVC pipeline on the smoke preset, in a temporary git + DVC clone."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REALDATA

from hintpose.trainlog import read_log

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
    stats = json.loads((repo / "metrics/details/dataset.json").read_text())
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


SMOKE = yaml.safe_load((ROOT / "params.smoke.yaml").read_text())
MODELS = tuple(SMOKE["models"])
DVC = [sys.executable, "-m", "dvc"]


def stale_stages(repo: Path, env: dict[str, str]) -> set[str]:
    status = run([*DVC, "status"], repo, env).stdout
    return {line.strip().rstrip(":") for line in status.splitlines()
            if line and not line.startswith(("\t", " ")) and line.strip().endswith(":")}


def ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines()
            if line.startswith("Running stage '")}


def finite_numbers(value: object, where: str) -> int:
    """Count the numbers in a JSON value, failing on a NaN or infinity."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return 0
    if isinstance(value, int | float):
        assert math.isfinite(value), where
        return 1
    if isinstance(value, dict):
        return sum(finite_numbers(v, f"{where}.{k}") for k, v in value.items())
    if isinstance(value, list):
        return sum(finite_numbers(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise AssertionError(f"{where}: unexpected {value!r}")


@pytest.fixture(scope="module")
def reproduced(clone: tuple[Path, dict[str, str]]) -> tuple[Path, dict[str, str]]:
    """The whole smoke pipeline, run once and committed."""
    repo, env = clone
    run([*DVC, "repro"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "reproduced"], repo, env)
    return repo, env


@pytest.mark.slow
def test_whole_pipeline_outputs(reproduced) -> None:
    repo, env = reproduced
    for name in MODELS:
        config = json.loads((repo / f"data/models/{name}/model.json").read_text())
        assert config["recurrent"] == name.startswith(("rr", "icrr"))
        assert config["cue"] == ("point" if name.startswith("ic") else "none")
        log = read_log(repo / f"metrics/logs/train/{name}")  # dvclive, one row per epoch
        assert len(log) == SMOKE["pose"]["train"]["epochs"] and "val_loss" in log.columns
        assert ("train_loss_hop3" in log.columns) == config["recurrent"]
        infer = json.loads((repo / f"metrics/details/infer/{name}.json").read_text())
        assert infer["cues_file"]
        for boxes in ("det", "gt"):
            assert infer[boxes]["instances"] >= infer[boxes]["boxes"] > 0
        record = json.loads((repo / f"data/infer/{name}/infer.json").read_text())
        assert record["cue_probe"] == infer["cue_probe"]  # score reads the probe there
    assert (repo / "data/pretrain/hrnet.pt").is_file()
    for net in ("pretrain", "detector", "multiposenet", "posefix"):
        assert len(read_log(repo / "metrics/logs" / net)) >= 1, net
    # every metrics file holds numbers, all finite
    files = sorted((repo / "metrics").rglob("*.json"))
    assert len(files) > 30
    for path in files:
        assert finite_numbers(json.loads(path.read_text()), str(path)) > 0, path
    # the cue file is aligned one to one with the detections it was made from
    detections = json.loads((repo / "data/detections/val.json").read_text())
    for name in ("val", "oracle"):
        cues = json.loads((repo / f"data/cues/{name}.json").read_text())
        assert [(c["image_id"], c["bbox"]) for c in cues] == [
            (d["image_id"], d["bbox"]) for d in detections]
    lines = (repo / "metrics/results.csv").read_text().splitlines()
    assert lines[0] == "name,boxes,AP,AP50,AP75,APm,APl,AR,AP_easy,AP_medium,AP_hard"
    cue_models = [name for name in MODELS if name.startswith("ic")]
    # + each cue model under cue-aware scoring, ensemble, the report's ensemble, + PoseFix
    assert len(lines) == 1 + 2 * len(MODELS) + 2 * len(cue_models) + 6
    table = (repo / "metrics/results_table.md").read_text()
    for row in ("| I.C.+R.R. | ", "| I.C.+R.R., cue-aware scoring | ", "| Ensemble | ",
                "| Ensemble, the report's rule | ", "| Ensemble + PoseFix | "):
        assert row in table
    # the cue branch: its log holds the cue probe, and the cue models started from it
    assert (repo / "data/pretrain/cue.pt").is_file()
    branch = read_log(repo / "metrics/logs/pretrain_cue")
    assert len(branch) == SMOKE["pose"]["pretrain"]["cue_epochs"]
    assert branch["follow_rate"].between(0, 1).all()
    # where the method should win: AP as detector boxes go missing
    removal = json.loads((repo / "metrics/details/box_removal.json").read_text())
    assert {r["model"] for r in removal["rows"]} == {"baseline", "icrr_a"}
    assert {r["protocol"] for r in removal["rows"]} == {"report", "cue-aware"}
    assert (repo / "metrics/plots/box_removal.png").stat().st_size > 5000
    for figure in ("figure3_instance_cues", "training_curves", "learning_curves",
                   "crowded_persons"):
        assert (repo / f"metrics/plots/report/{figure}.png").stat().st_size > 5000
    # the learning curves' figures: every epoch of every network logs its accuracy and time
    for net, column in (("pretrain", "val_AP"), ("train/baseline", "val_AP"),
                        ("train/rr_a", "val_AP_hop1"), ("detector", "val_AP"),
                        ("multiposenet", "val_cue_recall")):
        log = read_log(repo / "metrics/logs" / net)
        assert log[column].notna().all() and (log["seconds"] > 0).all(), net
    # the registered metrics are the headline figures; the per-result-set scores are details
    summary = json.loads((repo / "metrics/summary.json").read_text())
    assert set(summary["AP"]) == {"baseline", "ic", "rr", "icrr", "ic_cueaware",
                                  "icrr_cueaware", "ensemble", "ensemble_report",
                                  "ensemble_posefix"}
    assert set(summary["AP"]["icrr_cueaware"]) == set(summary["AP"]["ensemble_report"]) == {
        "det", "det_hard"}
    assert {"det", "gt"} <= set(summary["AP"]["ensemble_posefix"])
    assert (repo / "metrics/details/scores/ensemble_posefix_det.json").is_file()
    assert set(json.loads((repo / "metrics/detection.json").read_text())) == {"box_AP",
                                                                             "box_AR"}
    assert set(json.loads((repo / "metrics/cues.json").read_text())["cue_recall"]) == {
        "multiposenet", "gt"}
    shown = run([*DVC, "metrics", "show"], repo, env).stdout
    for name in ("metrics/summary.json", "metrics/detection.json", "metrics/cues.json"):
        assert name in shown, shown
    assert "metrics/details" not in shown and "metrics/logs" not in shown
    # the demo runs detector, cue net and a pose model on any image and draws the result
    images = [next((repo / "data/dataset/images").rglob("*.jpg"))]
    real = REALDATA / "mmpose_coco" / "000000196141.jpg"  # a real COCO photo, when present
    images += [real] if real.is_file() else []
    for image in images:
        out = run([sys.executable, "-m", "hintpose.report.demo", str(image), "--out",
                   str(repo / "demo.png")], repo, env).stdout
        assert "persons detected" in out and (repo / "demo.png").stat().st_size > 10_000
        (repo / "demo.png").unlink()


@pytest.mark.slow
def test_second_repro_runs_nothing(reproduced) -> None:
    repo, env = reproduced
    out = run([*DVC, "repro"], repo, env).stdout
    assert ran_stages(out) == set(), out
    assert stale_stages(repo, env) == set()


@pytest.mark.slow
def test_param_edits_stale_only_their_dependants(reproduced) -> None:
    repo, env = reproduced
    params = (repo / "params.yaml").read_text()
    edits = {
        # a model's entry: that model, and the stages that read the list of models (the
        # report draws every model's training curves)
        ("ic_a: {cue: point, recurrent: false, seed: 1}",
         "ic_a: {cue: point, recurrent: false, seed: 3}"):
            {"train@ic_a", "ensemble", "ensemble_report", "box_removal", "score", "report"},
        # an inference setting: every infer stage, and the three that post-process again
        ("nms_thr: 0.9 ", "nms_thr: 0.8 "):
            {f"infer@{name}" for name in MODELS} | {"ensemble", "ensemble_report",
                                                     "box_removal", "refine"},
    }
    try:
        for (old, new), expected in edits.items():
            assert old in params
            (repo / "params.yaml").write_text(params.replace(old, new, 1))
            assert stale_stages(repo, env) == expected
    finally:
        (repo / "params.yaml").write_text(params)


@pytest.mark.slow
def test_experiment_reruns_only_posefix_stages_and_metrics_diff_shows_it(reproduced) -> None:
    repo, env = reproduced
    before = json.loads((repo / "metrics/logs/posefix/metrics.json").read_text())
    # keep_ratio 0: every joint moves, so the new PoseFix changes the results downstream
    out = run([*DVC, "exp", "run", "-S", "posefix.train.lr=0.002", "-S", "posefix.keep_ratio=0"],
              repo, env).stdout
    assert ran_stages(out) == {"train_posefix", "refine", "score", "report"}, out
    after = json.loads((repo / "metrics/logs/posefix/metrics.json").read_text())
    assert after["lr"] != before["lr"] and after["train_loss"] != before["train_loss"]
    # `dvc metrics diff` lists the headline AP (the smoke models' AP may stay at 0: --all)
    shown = json.loads(run([*DVC, "metrics", "diff", "--all", "--json"], repo, env).stdout)
    assert {"AP.ensemble_posefix.det", "AP.icrr.gt_hard", "follow_rate.icrr"} <= set(
        shown["metrics/summary.json"]), shown
    changed = json.loads(run([*DVC, "metrics", "diff", "--json"], repo, env).stdout)
    # nothing upstream of PoseFix moved
    assert not any(k.startswith(("AP.baseline.", "AP.ensemble.", "follow_rate."))
                   for k in changed.get("metrics/summary.json", {})), changed
    assert set(changed) <= {"metrics/summary.json"}, changed
    run(["git", "checkout", "-q", "--", "."], repo, env)
    run([*DVC, "checkout", "-q"], repo, env, check=False)


@pytest.mark.slow
def test_push_and_pull_restore_every_artifact(reproduced, tmp_path: Path) -> None:
    repo, env = reproduced
    remote = tmp_path / "remote"
    run([*DVC, "remote", "add", "-d", "-f", "store", str(remote)], repo, env)
    run(["git", "add", ".dvc/config"], repo, env)
    run(["git", "commit", "-qm", "remote"], repo, env)
    run([*DVC, "push"], repo, env)
    fresh = tmp_path / "fresh"
    run(["git", "clone", "-q", str(repo), str(fresh)], tmp_path, env)
    run([*DVC, "pull"], fresh, env)
    assert stale_stages(fresh, env) == set()
    for path in ("data/dataset/annotations/person_keypoints_val.json", "data/detector/model.pt",
                 "data/pretrain/hrnet.pt", f"data/models/{MODELS[-1]}/model.pt",
                 "data/cues/val.json", "data/ensemble/results_det.json",
                 "data/results/ensemble_posefix.json"):
        assert (fresh / path).read_bytes() == (repo / path).read_bytes(), path
