"""The infer and score stages on a tiny dataset with tiny random models: consistent outputs,
cue fallbacks counted, bad inputs stopped with one message, the results CSV and table."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from hintpose.config import ModelParams, PoseDataParams, PoseParams
from hintpose.data.params import DatasetParams
from hintpose.data.prepare import prepare_dataset
from hintpose.errors import DataError
from hintpose.models.folder import save_network
from hintpose.scoring.results import (
    RESULT_COLUMNS,
    TABLE_ROWS,
    format_cell,
    mean_spread,
    method_of,
    report_table,
    results_frame,
)
from hintpose.topdown.boxes import cues_inside, read_boxes, read_cues
from hintpose.topdown.outputs import INDEX_COLUMNS, inference_files, read_instance_index
from hintpose.topdown.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
#: name -> (cue, recurrent)
MODELS = {"baseline": ("none", False), "ic_a": ("point", False), "ic_b": ("point", False),
          "rr_a": ("none", True), "icrr_a": ("point", True)}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny val split, tiny random models, jittered GT boxes as detections, cues, params."""
    root = tmp_path_factory.mktemp("infer")
    val = prepare_dataset(root / "dataset", DatasetParams(train_images=2, val_images=4),
                          progress=False)["val"]
    pose = PoseParams(width=4, hops=2, data=PoseDataParams(input_width=48, input_height=64))
    for name in ("baseline", "ic_a", "rr_a"):
        cue, rr = MODELS[name]
        spec = ModelSpec.from_params(pose, ModelParams(cue=cue, recurrent=rr, seed=1),
                                     val.category["keypoints"], name)
        torch.manual_seed(0)
        save_network(root / "models" / name, spec.build(), spec.to_json())
    rng = np.random.default_rng(0)
    dets = []
    for ann in val.training_persons():
        x, y, w, h = ann["bbox"]
        dets.append({"image_id": ann["image_id"], "category_id": 1,
                     "bbox": [x + rng.normal(0, 2), y + rng.normal(0, 2), w, h],
                     "score": float(rng.uniform(0.3, 1.0))})
    # narrower than detector.min_box_size: the detect stage would not write it; infer keeps
    # every box it is given
    dets.append({"image_id": dets[0]["image_id"], "category_id": 1, "bbox": [5, 5, 20, 60],
                 "score": 0.9})
    (root / "det.json").write_text(json.dumps(dets))
    cues = []
    for i, d in enumerate(dets):  # 0, 1 or 2 cues per box
        x, y, w, h = d["bbox"]
        points = [[x + w * 0.5, y + h * 0.3, 0.9], [x + w * 0.4, y + h * 0.7, 0.5]][: i % 3]
        cues.append({**d, "cues": points})
    (root / "cues.json").write_text(json.dumps(cues))
    params = yaml.safe_load((ROOT / "params.smoke.yaml").read_text())
    params["models"] = {k: {"cue": cue, "recurrent": rr, "seed": 1}
                        for k, (cue, rr) in MODELS.items()}
    # One thread: tiny models gain nothing from two, and stall badly when the cores are busy;
    # one process: the stage runs in this process (two: see the test below).
    params["runtime"].update(device="cpu", bf16=False, channels_last=False, procs=1, threads=1)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def run_stage(script: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a stage script in this process (no second torch import)."""
    monkeypatch.setattr(sys, "argv", [script, *args])
    runpy.run_path(str(ROOT / "stages" / script), run_name="__main__")


def infer_args(work: Path, model: str, *extra: str) -> list[str]:
    return ["--params", str(work / "params.yaml"), "--model-dir", str(work / "models" / model),
            "--dataset", str(work / "dataset"), "--detections", str(work / "det.json"),
            "--out", str(work / "infer" / model), "--details",
            str(work / "metrics" / f"{model}.json"), *extra]


def stage_error(script: str, args: list[str], monkeypatch: pytest.MonkeyPatch,
                capsys: pytest.CaptureFixture[str]) -> str:
    """Run a stage expected to fail; return its one-line error message."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run_stage(script, args, monkeypatch)
    assert info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ")
    return lines[-1]


def test_infer_writes_consistent_heatmaps_index_and_results(work: Path, monkeypatch) -> None:
    run_stage("infer.py", infer_args(work, "baseline"), monkeypatch)
    out = work / "infer" / "baseline"
    metrics = json.loads((work / "metrics" / "baseline.json").read_text())
    dets = json.loads((work / "det.json").read_text())
    assert any(min(d["bbox"][2:]) < 32 for d in dets)  # a small box, kept: no second filter
    assert metrics["det"]["boxes_in"] == metrics["det"]["boxes"] == len(dets)
    assert metrics["det"]["dropped_outside"] == 0
    assert metrics["det"]["cue_fallbacks"] == 0  # no cue input: nothing to fall back from
    for boxes in ("det", "gt"):
        files = inference_files(out, boxes)
        heat = np.load(files["heatmaps"], mmap_mode="r")
        index = read_instance_index(files["index"])
        assert tuple(index.columns) == INDEX_COLUMNS
        assert heat.dtype == np.float16 and heat.shape == (len(index), 17, 16, 12)
        assert len(index) == metrics[boxes]["instances"] == metrics[boxes]["boxes"]
        assert (index["cue_index"] == -1).all() and index["cue_x"].isna().all()
        assert np.isfinite(heat).all()
        results = json.loads(files["results"].read_text())
        assert len(results) == metrics[boxes]["results"] <= len(index)
        assert all(len(r["keypoints"]) == 51 and r["category_id"] == 1 for r in results)
        assert {r["image_id"] for r in results} <= set(index["image_id"])
    gt = read_instance_index(inference_files(out, "gt")["index"])
    assert (gt["box_score"] == 1.0).all() and len(gt) == len(dets) - 1
    assert not (work / "infer" / "baseline.partial").exists()
    record = json.loads((out / "infer.json").read_text())
    assert record["model"]["name"] == "baseline" and record["device"] == "cpu"
    # the counts and the cue probe are in the output folder too (score reads the probe there)
    assert {k: record[k] for k in metrics} == metrics
    assert set(metrics) == {"cue", "recurrent", "cues_file", "det", "gt", "cue_probe"}
    assert (metrics["cue"], metrics["recurrent"], metrics["cues_file"]) == ("none", False, False)
    assert ModelSpec.from_json(record["model"], out / "infer.json") == ModelSpec.from_json(
        json.loads((work / "models" / "baseline" / "model.json").read_text()), "model.json")
    assert not inference_files(out, "det")["cue_aware"].exists()  # no cue: one protocol


def test_instance_cue_model_runs_per_cue_and_counts_fallbacks(work: Path, monkeypatch) -> None:
    run_stage("infer.py", infer_args(work, "ic_a"), monkeypatch)  # no cues: all at the center
    metrics = json.loads((work / "metrics" / "ic_a.json").read_text())
    for boxes in ("det", "gt"):
        assert metrics[boxes]["cue_fallbacks"] == metrics[boxes]["boxes"] > 0
    run_stage("infer.py", infer_args(work, "ic_a", "--cues", str(work / "cues.json")),
              monkeypatch)
    metrics = json.loads((work / "metrics" / "ic_a.json").read_text())
    index = read_instance_index(work / "infer/ic_a/instances_det.csv")
    cues = json.loads((work / "cues.json").read_text())
    kept = sorted(set(index["box_index"]))
    assert len(index) == sum(max(1, len(cues[b]["cues"])) for b in kept)
    assert metrics["det"]["cue_fallbacks"] == sum(not cues[b]["cues"] for b in kept)
    for b in kept:  # cue i of box b is the i-th point of its cue list
        rows = index[index["box_index"] == b]
        expected = [p[:2] for p in cues[b]["cues"]] or [[np.nan, np.nan]]
        np.testing.assert_allclose(rows[["cue_x", "cue_y"]].to_numpy(), expected)
        assert rows["cue_index"].tolist() == (list(range(len(cues[b]["cues"]))) or [-1])
    heat = np.load(work / "infer/ic_a/heatmaps_det.npy", mmap_mode="r")
    assert heat.shape[0] == len(index)
    # both protocols: the report's (every cue's pose alike) and cue-aware scoring (a box's
    # other cues decayed before the NMS; hintpose.topdown.postprocess, tested there)
    aware = json.loads(inference_files(work / "infer/ic_a", "det")["cue_aware"].read_text())
    assert metrics["det"]["cue_aware_results"] == len(aware) > 0
    assert {r["image_id"] for r in aware} <= set(index["image_id"])
    assert 0 < metrics["gt"]["cue_fallbacks"] < metrics["gt"]["boxes"]
    probe = metrics["cue_probe"]  # the probe of a model with a cue input (hintpose.cue_probe)
    assert probe["pairs"] > 0 and 0.0 <= probe["follow_rate"] <= 1.0
    assert not (work / "infer/ic_a/cue_probe_heatmaps.npy").exists()


def test_recurrent_model_reports_the_ap_of_every_hop(work: Path, monkeypatch) -> None:
    """A recurrent model's details hold the AP of each hop's heatmaps (hop 1 first); the last
    is the AP of its results file, and no hop heatmaps stay behind."""
    from hintpose.scoring.evaluation import coco_keypoint_eval

    run_stage("infer.py", infer_args(work, "rr_a"), monkeypatch)
    metrics = json.loads((work / "metrics" / "rr_a.json").read_text())
    config = json.loads((work / "models" / "rr_a" / "model.json").read_text())
    assert config["hops"] > 1
    gt = json.loads((work / "dataset" / "annotations" / "person_keypoints_val.json").read_text())
    for boxes in ("det", "gt"):
        hop_ap = metrics[boxes]["hop_AP"]
        assert len(hop_ap) == config["hops"] and all(0 <= ap <= 100 for ap in hop_ap)
        results = json.loads(inference_files(work / "infer/rr_a", boxes)["results"].read_text())
        assert hop_ap[-1] == round(100 * coco_keypoint_eval(gt, results)["AP"], 2)
    assert not list((work / "infer" / "rr_a").glob("hop*"))
    baseline = json.loads((work / "metrics" / "baseline.json").read_text()) if (
        work / "metrics" / "baseline.json").is_file() else {"det": {}}
    assert "hop_AP" not in baseline["det"]


def test_two_processes_write_what_one_writes(work: Path, tmp_path: Path, monkeypatch) -> None:
    """runtime.procs 2: the stage reruns itself as two processes that split the boxes; the
    files match a one-process run's."""
    args = infer_args(work, "ic_a", "--cues", str(work / "cues.json"))
    run_stage("infer.py", args, monkeypatch)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["runtime"].update(procs=2, threads=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    two = [*args[2:], "--params", str(tmp_path / "params.yaml")]
    two[two.index("--out") + 1] = str(tmp_path / "ic_a")
    two[two.index("--details") + 1] = str(tmp_path / "ic_a.json")
    proc = subprocess.run([sys.executable, str(ROOT / "stages/infer.py"), *two], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(2 process(es))" in proc.stdout
    one_metrics = json.loads((work / "metrics/ic_a.json").read_text())
    two_metrics = json.loads((tmp_path / "ic_a.json").read_text())
    assert two_metrics["cue_probe"] == one_metrics["cue_probe"]
    for boxes in ("det", "gt"):
        files = inference_files(work / "infer/ic_a", boxes), inference_files(tmp_path / "ic_a",
                                                                              boxes)
        pd.testing.assert_frame_equal(*(read_instance_index(f["index"]) for f in files))
        np.testing.assert_allclose(*(np.load(f["heatmaps"]).astype(np.float32) for f in files),
                                   atol=2e-3)
        for key in ("instances", "boxes", "cue_fallbacks", "results"):
            assert two_metrics[boxes][key] == one_metrics[boxes][key]


def test_cues_inside_boxes() -> None:
    records = [{"image_id": 1, "cues": [[10, 10, 0.5], [50, 50, 0.9]]},
               {"image_id": 1, "cues": [[10, 10, 0.7]]},  # the same peak seen from another box
               {"image_id": 2, "cues": [[12, 12, 1.0]]}]
    boxes = [{"image_id": 1, "bbox": [0, 0, 60, 60]}, {"image_id": 1, "bbox": [0, 0, 20, 20]},
             {"image_id": 3, "bbox": [0, 0, 20, 20]}]
    assert cues_inside(boxes, records) == [[[50, 50, 0.9], [10, 10, 0.7]], [[10, 10, 0.7]], []]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{", "det.json: malformed JSON"),
        ('{"image_id": 1}', "det.json: detections must be a JSON list"),
        ('[{"image_id": 999, "bbox": [0, 0, 50, 50], "score": 1}]',
         "det.json: entry 0 refers to unknown image id 999"),
        ('[{"image_id": 1, "bbox": [0, 0, 50], "score": 1}]',
         "det.json: entry 0 needs a bbox of 4 finite numbers"),
        ('[{"image_id": 1, "bbox": [0, 0, 50, NaN], "score": 1}]',
         "det.json: entry 0 needs a bbox of 4 finite numbers"),
        ('[{"image_id": 1, "bbox": [0, 0, 50, 50]}]',
         "det.json: entry 0 needs a finite score, got None"),
        ('[{"image_id": 1, "category_id": 3, "bbox": [0, 0, 50, 50], "score": 1}]',
         "det.json: entry 0 has category_id 3"),
    ],
)
def test_bad_detections_file(work: Path, tmp_path: Path, content: str, message: str) -> None:
    from hintpose.data.coco import load_split

    bad = tmp_path / "det.json"
    bad.write_text(content)
    with pytest.raises(DataError, match=message):
        read_boxes(bad, load_split(work / "dataset", "val"))


def test_misaligned_cues_file(tmp_path: Path) -> None:
    boxes = [{"image_id": 1, "bbox": [0.0, 0.0, 50.0, 50.0], "score": 1.0}]
    path = tmp_path / "cues.json"
    path.write_text(json.dumps([]))
    with pytest.raises(DataError, match="cues.json: 0 entries but det.json has 1 boxes"):
        read_cues(path, boxes, "det.json")
    path.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 60, 50], "cues": []}]))
    with pytest.raises(DataError, match="cues.json: entry 0 .* does not match box 0"):
        read_cues(path, boxes, "det.json")
    path.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 50, 50], "cues": [[1, 2]]}]))
    with pytest.raises(DataError, match=r"cues.json: entry 0 needs cues as a list of \[x, y"):
        read_cues(path, boxes, "det.json")


def test_infer_errors_keep_earlier_outputs(work: Path, tmp_path: Path, monkeypatch,
                                           capsys) -> None:
    run_stage("infer.py", infer_args(work, "baseline"), monkeypatch)
    out = work / "infer" / "baseline"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    dets = json.loads((work / "det.json").read_text())
    dets[-1]["image_id"] = 4242
    bad = tmp_path / "det.json"
    bad.write_text(json.dumps(dets))
    args = infer_args(work, "baseline")
    args[args.index("--detections") + 1] = str(bad)
    msg = stage_error("infer.py", args, monkeypatch, capsys)
    assert msg == (f"error: {bad}: entry {len(dets) - 1} refers to unknown image id 4242 (not "
                   "in person_keypoints_val.json)")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    args = infer_args(work, "baseline")
    args[args.index("--model-dir") + 1] = str(work / "models" / "nope")
    msg = stage_error("infer.py", args, monkeypatch, capsys)
    assert msg == f"error: {work / 'models' / 'nope'}: model folder not found (run the train stage)"


# --------------------------------------------------------------------------- score


def fake_results(work: Path, noise: float, seed: int) -> list[dict]:
    """GT poses with pixel noise, as a model would predict them on GT boxes."""
    gt = json.loads((work / "dataset/annotations/person_keypoints_val.json").read_text())
    rng = np.random.default_rng(seed)
    out = []
    for ann in gt["annotations"]:
        if ann.get("iscrowd") or not ann["num_keypoints"]:
            continue
        k = np.asarray(ann["keypoints"], float).reshape(-1, 3)
        k[:, :2] += rng.normal(0, noise, (len(k), 2))
        k[:, 2] = 0.9
        out.append({"image_id": ann["image_id"], "category_id": 1,
                    "keypoints": k.ravel().round(2).tolist(), "score": 0.9})
    return out


#: The cue probe's follow rate each fake model's infer.json reports (none for the baseline:
#: a probe without pairs).
FOLLOW = {"ic_a": 0.25, "ic_b": 0.5, "rr_a": 0.125, "icrr_a": 0.75}


@pytest.fixture(scope="module")
def scored(work: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The score stage over fake result sets (and infer.json records) of every model and an
    ensemble."""
    root = tmp_path_factory.mktemp("score")
    for i, name in enumerate([*MODELS, "ensemble"]):
        for j, boxes in enumerate(("det", "gt")):
            folder = root / ("ensemble" if name == "ensemble" else f"infer/{name}")
            folder.mkdir(parents=True, exist_ok=True)
            path = inference_files(folder, boxes)["results"]
            path.write_text(json.dumps(fake_results(work, 1.0 + i + j, i)))
            if name in ("ic_a", "icrr_a"):  # the same models under cue-aware scoring
                path = inference_files(folder, boxes)["cue_aware"]
                path.write_text(json.dumps(fake_results(work, 2.0 + i + j, i)))
        if name in MODELS:
            pairs = 10 if name in FOLLOW else 0
            probe = {"pairs": pairs, "oks_own": 0.5, "oks_other": 0.4,
                     "follow_rate": FOLLOW.get(name, 0.0)}
            (root / f"infer/{name}/infer.json").write_text(json.dumps({"cue_probe": probe}))
    args = ["--params", str(work / "params.yaml"), "--dataset", str(work / "dataset"),
            "--infer", str(root / "infer"), "--results", f"ensemble={root / 'ensemble'}",
            "--summary", str(root / "metrics/summary.json"),
            "--scores", str(root / "metrics/scores"), "--csv", str(root / "metrics/results.csv"),
            "--table", str(root / "metrics/results_table"),
            "--crowd-plot", str(root / "metrics/plots/ap_by_crowd")]
    mp = pytest.MonkeyPatch()
    try:
        run_stage("score.py", args, mp)
    finally:
        mp.undo()
    return root


def test_score_writes_results_csv_metrics_and_plot(scored: Path) -> None:
    results = pd.read_csv(scored / "metrics/results.csv")
    assert list(results.columns) == list(RESULT_COLUMNS)
    assert len(results) == 2 * (len(MODELS) + 1 + 2)  # + ic_a, icrr_a cue-aware
    assert set(results["boxes"]) == {"det", "gt"}
    ap = results.set_index(["name", "boxes"])["AP"]
    assert ap[("baseline", "det")] > ap[("ensemble", "gt")]  # 1 px noise vs 7 px
    for _, row in results.iterrows():
        metrics = json.loads((scored / f"metrics/scores/{row['name']}_{row['boxes']}.json")
                             .read_text())
        assert metrics["AP"] == pytest.approx(row["AP"], abs=1e-6)
        assert {"AR50", "ARl", "AR_hard", "AP_easy"} <= set(metrics)
    assert len(list((scored / "metrics/scores").iterdir())) == len(results)
    crowd = pd.read_csv(scored / "metrics/plots/ap_by_crowd.csv")
    assert list(crowd.columns) == ["label", "name", "boxes", "crowd", "AP"]
    assert (scored / "metrics/plots/ap_by_crowd.png").read_bytes()[:4] == b"\x89PNG"


def test_score_summary_holds_the_headline_figures(scored: Path) -> None:
    """metrics/summary.json (the registered metrics): AP and hard-crowd AP in percent per table
    row and box mode (the mean over the row's models), and the cue probe's follow rate per
    method (models whose probe had pairs)."""
    summary = json.loads((scored / "metrics/summary.json").read_text())
    assert set(summary) == {"AP", "follow_rate"}
    results = pd.read_csv(scored / "metrics/results.csv").set_index(["name", "boxes"])
    assert set(summary["AP"]) == {"baseline", "ic", "rr", "icrr", "ic_cueaware",
                                  "icrr_cueaware", "ensemble"}  # no PoseFix run
    assert set(summary["AP"]["icrr_cueaware"]) <= {"det", "det_hard"}  # detector boxes only
    assert summary["AP"]["ic_cueaware"]["det"] == pytest.approx(
        round(100 * results.loc[("ic_a_cueaware", "det"), "AP"], 2))
    for boxes in ("det", "gt"):
        assert summary["AP"]["baseline"][boxes] == pytest.approx(
            round(100 * results.loc[("baseline", boxes), "AP"], 2))
        ic = [results.loc[(m, boxes), "AP"] for m in ("ic_a", "ic_b")]
        assert summary["AP"]["ic"][boxes] == pytest.approx(round(100 * np.mean(ic), 2))
        assert summary["AP"]["ensemble"][boxes] == pytest.approx(
            round(100 * results.loc[("ensemble", boxes), "AP"], 2))
        hard = results.loc[("icrr_a", boxes), "AP_hard"]
        if np.isfinite(hard):
            assert summary["AP"]["icrr"][f"{boxes}_hard"] == pytest.approx(round(100 * hard, 2))
        else:
            assert f"{boxes}_hard" not in summary["AP"]["icrr"]
    assert summary["follow_rate"] == {"ic": pytest.approx(0.375), "rr": pytest.approx(0.125),
                                      "icrr": pytest.approx(0.75)}


def test_score_table_rows_and_mean_spread(scored: Path) -> None:
    table = pd.read_csv(scored / "metrics/results_table.csv")
    assert list(table.columns) == ["boxes", "method", "AP", "AR", "AP50", "AP75", "APm", "APl",
                                   "hard-crowd AP", "models"]
    det = table[table["boxes"] == "det"].set_index("method")
    assert list(det.index) == list(TABLE_ROWS)
    assert det.loc["Instance cue", "models"] == "ic_a, ic_b"
    results = pd.read_csv(scored / "metrics/results.csv").set_index(["name", "boxes"])
    a, b = results.loc[("ic_a", "det"), "AP"], results.loc[("ic_b", "det"), "AP"]
    assert det.loc["Instance cue", "AP"] == (f"{(a + b) / 2 * 100:.1f} ± "
                                             f"{abs(a - b) / 2 * 100:.1f}")
    assert det.loc["HRNet baseline", "AP"] == f"{results.loc[('baseline', 'det'), 'AP'] * 100:.1f}"
    assert det.loc["Ensemble + PoseFix", "AP"] == "—"
    assert det.loc["I.C.+R.R., cue-aware scoring", "models"] == "icrr_a_cueaware"
    md = (scored / "metrics/results_table.md").read_text()
    assert "## Detector boxes" in md and "## GT boxes" in md
    assert "| Instance cue | " + det.loc["Instance cue", "AP"] in md


def test_score_names_the_missing_result_set(work: Path, scored: Path, monkeypatch,
                                            capsys) -> None:
    before = (scored / "metrics/results.csv").read_bytes()
    args = ["--params", str(work / "params.yaml"), "--dataset", str(work / "dataset"),
            "--infer", str(scored / "nowhere"), "--csv", str(scored / "metrics/results.csv")]
    msg = stage_error("score.py", args, monkeypatch, capsys)
    assert msg == (f"error: {scored / 'nowhere' / 'baseline'}: inference output of model "
                   "'baseline' not found (run infer@baseline)")
    assert (scored / "metrics/results.csv").read_bytes() == before


def test_table_rows_follow_the_model_settings() -> None:
    assert method_of("x", False, False) == "HRNet baseline"
    assert method_of("whatever", True, False) == "Instance cue"
    assert method_of("baseline", False, True) == "Recurrent refinement"  # settings, not name
    assert method_of("y", True, True) == "I.C.+R.R."
    assert method_of("ensemble_posefix") == "Ensemble + PoseFix"
    with pytest.raises(ValueError, match="neither an ensemble"):
        method_of("foo")
    assert method_of("y", True, True, cue_aware=True) == "I.C.+R.R., cue-aware scoring"
    with pytest.raises(ValueError, match="cue-aware scoring needs a cue model"):
        method_of("x", False, True, cue_aware=True)
    assert mean_spread([0.70, 0.74]) == pytest.approx((0.72, 0.02))
    assert format_cell([0.70, 0.74]) == "72.0 ± 2.0"
    assert format_cell([0.705]) == "70.5"
    assert format_cell([float("nan")]) == "—"
    rows = [{"name": n, "boxes": "det", "AP": ap, "AP_hard": None}
            for n, ap in (("m1", 0.5), ("m2", 0.6), ("m3", 0.7))]
    table = report_table(results_frame(rows), {"m1": "Instance cue", "m2": "Instance cue",
                                               "m3": "HRNet baseline"})
    assert table.set_index("method").loc["Instance cue", "AP"] == "55.0 ± 5.0"
    assert table.set_index("method").loc["Instance cue", "hard-crowd AP"] == "—"
    assert table["boxes"].unique().tolist() == ["det"]
