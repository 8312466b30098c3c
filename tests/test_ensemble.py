"""The heatmap ensemble: one member reproduces that member exactly, a model without a cue input
is broadcast to every cue of its box, weights apply, mismatched members are clear errors."""

from __future__ import annotations

import dataclasses
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from hintpose.config import EnsembleParams, EvalParams, ModelParams, PoseDataParams, PoseParams
from hintpose.data.coco import load_split
from hintpose.data.keypoints import KEYPOINT_NAMES
from hintpose.data.params import DatasetParams
from hintpose.data.prepare import prepare_dataset
from hintpose.ensemble import (
    AveragedHeatmaps,
    HeatmapFile,
    Member,
    align_members,
    load_member,
    report_rule_members,
    resolve_members,
    run_ensemble,
)
from hintpose.errors import ConfigError, DataError
from hintpose.runtime import Runtime
from hintpose.topdown.boxes import cues_inside, gt_boxes, with_cues
from hintpose.topdown.inference import PredictSettings, run_inference
from hintpose.topdown.outputs import INDEX_COLUMNS, inference_files
from hintpose.topdown.postprocess import PostSettings
from hintpose.topdown.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (17, 8, 6)
#: The ``eval`` defaults' decoder and post-processing (COCO's OKS sigmas, person category 1).
EV = EvalParams()
POST = PostSettings(EV.in_vis_thr, EV.nms_thr, EV.soft_nms, EV.neighbour_decay)


# --------------------------------------------------------------------------- synthetic members


def write_member(folder: Path, rows: list[tuple[int, int]], seed: int, boxes: int = 3,
                 shape: tuple[int, int, int] = SHAPE, size_w: float = 90.0,
                 sigma: float = 3.0) -> np.ndarray:
    """A member folder with instances ``rows`` of (box_index, cue_index) over ``boxes``
    boxes (one per image) and the ``infer.json`` of a model trained with ``sigma``; returns
    its heatmaps."""
    folder.mkdir(parents=True, exist_ok=True)
    pose = PoseParams(data=PoseDataParams(input_width=4 * shape[2], input_height=4 * shape[1],
                                          sigma=sigma))
    spec = ModelSpec.from_params(pose, ModelParams(), KEYPOINT_NAMES, folder.name)
    (folder / "infer.json").write_text(json.dumps({"model": spec.to_json()}))
    frame = pd.DataFrame(rows, columns=["box_index", "cue_index"])
    b = frame["box_index"].to_numpy().astype(float)
    frame = frame.assign(image_id=frame["box_index"] + 1, box_x=10 * b, box_y=5.0, box_w=40.0,
                         box_h=50.0, box_score=0.5 + 0.1 * b, cue_x=np.nan, cue_y=np.nan,
                         center_x=10 * b + 20, center_y=30.0, size_w=size_w, size_h=120.0)
    files = inference_files(folder, "det")
    frame[list(INDEX_COLUMNS)].to_csv(files["index"], index=False)
    heat = np.random.default_rng(seed).random((len(rows), *shape)).astype(np.float16)
    np.save(files["heatmaps"], heat)
    return heat


PER_CUE = [(0, 0), (0, 1), (1, -1), (2, 0), (2, 1), (2, 2)]
PER_BOX = [(0, -1), (1, -1), (2, -1)]


def test_cue_less_member_is_broadcast_to_every_cue_of_its_box(tmp_path: Path) -> None:
    cue_heat = write_member(tmp_path / "ic", PER_CUE, seed=1)
    box_heat = write_member(tmp_path / "rr", PER_BOX[::-1], seed=2)  # rows in another order
    # the per-box member listed first: the per-cue member still defines the instances
    members = [load_member(Member("rr", tmp_path / "rr", 1.0), "det"),
               load_member(Member("ic", tmp_path / "ic", 3.0), "det")]
    index, sources = align_members(members)
    assert list(zip(index["box_index"], index["cue_index"], strict=True)) == PER_CUE
    avg = AveragedHeatmaps(members, sources, [1.0, 3.0])(slice(0, len(PER_CUE)))
    box_row = {2: 0, 1: 1, 0: 2}  # the per-box member was written in reverse box order
    for i, (box, _) in enumerate(PER_CUE):
        expected = (box_heat[box_row[box]].astype(np.float32)
                    + 3 * cue_heat[i].astype(np.float32)) / 4
        np.testing.assert_allclose(avg[i], expected, rtol=1e-6)
    # chunks give the same numbers as one read
    part = AveragedHeatmaps(members, sources, [1.0, 3.0])(slice(2, 5))
    np.testing.assert_array_equal(part, avg[2:5])


def test_run_ensemble_results_and_stats(tmp_path: Path) -> None:
    write_member(tmp_path / "ic", PER_CUE, seed=1)
    write_member(tmp_path / "rr", PER_BOX, seed=2)
    members = [Member("ic", tmp_path / "ic", 1.0), Member("rr", tmp_path / "rr", 1.0)]
    out = run_ensemble(members, "det", EV.decoder, POST, chunk=2)
    assert out.stats["instances"] == len(PER_CUE) and out.stats["boxes"] == 3
    assert out.stats["broadcast_per_box"] == ["rr"]
    assert out.results and {r["image_id"] for r in out.results} <= {1, 2, 3}
    assert all(len(r["keypoints"]) == 3 * 17 for r in out.results)
    again = run_ensemble(members, "det", EV.decoder, POST, chunk=5)
    assert again.results == out.results
    # members' mutual OKS: random heatmaps disagree; a copy of a member agrees with it fully
    assert 0 <= out.stats["agreement"] < 1 and list(out.stats["agreement_pairs"]) == ["ic/rr"]
    write_member(tmp_path / "rr2", PER_BOX, seed=2)
    twin = run_ensemble([members[1], Member("rr2", tmp_path / "rr2", 1.0)], "det", EV.decoder,
                        POST)
    assert twin.stats["agreement"] == 1.0 and twin.results == run_ensemble(
        members[1:], "det", EV.decoder, POST).results
    assert run_ensemble(members[1:], "det", EV.decoder, POST).stats["agreement"] is None


def test_heatmap_file_reads_rows_in_any_order(tmp_path: Path) -> None:
    heat = write_member(tmp_path / "m", PER_CUE, seed=3)
    with HeatmapFile(inference_files(tmp_path / "m", "det")["heatmaps"]) as f:
        idx = np.array([4, 0, 0, 5, 2, 3])
        np.testing.assert_array_equal(f.rows(idx), heat[idx])
        assert f.rows(np.zeros(0, int)).shape == (0, *SHAPE)


def test_dark_decoding_needs_members_of_one_sigma(tmp_path: Path) -> None:
    """DARK's decoder smooths the averaged heatmaps with the members' target sigma: members
    trained with different sigmas, or without an inference record, are clear errors; HRNet's
    decoder needs neither."""
    write_member(tmp_path / "a", PER_BOX, seed=1)
    write_member(tmp_path / "b", PER_BOX, seed=2, sigma=2.0)
    members = [Member("a", tmp_path / "a", 1.0), Member("b", tmp_path / "b", 1.0)]
    with pytest.raises(DataError, match=r"different heatmap sigmas \(a: 0.375, b: 0.25\)"):
        run_ensemble(members, "det", "dark", POST)
    assert run_ensemble(members, "det", "hrnet", POST).results
    # a record that is not a model description (here: without its keypoints) names the file
    record = json.loads((tmp_path / "b" / "infer.json").read_text())
    del record["model"]["keypoint_names"]
    (tmp_path / "b" / "infer.json").write_text(json.dumps(record))
    with pytest.raises(DataError, match="b/infer.json: "):
        run_ensemble(members, "det", "dark", POST)
    (tmp_path / "b" / "infer.json").unlink()
    with pytest.raises(DataError, match="b/infer.json: inference settings not found"):
        run_ensemble(members, "det", "dark", POST)


def test_mismatched_members_are_clear_errors(tmp_path: Path) -> None:
    write_member(tmp_path / "ic", PER_CUE, seed=1)
    write_member(tmp_path / "small", PER_BOX, seed=2, shape=(17, 4, 3))
    write_member(tmp_path / "crop", PER_BOX, seed=2, size_w=91.0)
    write_member(tmp_path / "fewer", PER_BOX[:2], seed=2, boxes=2)
    write_member(tmp_path / "other_cues", PER_CUE[:-1], seed=2)
    cases = {"small": "heatmap size", "crop": r"crop \(center and size\)", "fewer": "boxes differ",
             "other_cues": "same cues"}
    for name, message in cases.items():
        members = [Member("ic", tmp_path / "ic", 1.0), Member(name, tmp_path / name, 1.0)]
        with pytest.raises(DataError, match=message) as err:
            run_ensemble(members, "det", EV.decoder, POST)
        assert name in str(err.value)
    with pytest.raises(DataError, match="run infer@gone"):
        run_ensemble([Member("gone", tmp_path / "gone", 1.0)], "det", EV.decoder, POST)
    files = inference_files(tmp_path / "ic", "det")
    np.save(files["heatmaps"], np.zeros((2, *SHAPE), np.float16))
    with pytest.raises(DataError, match="2 heatmaps but"):
        run_ensemble([Member("ic", tmp_path / "ic", 1.0)], "det", EV.decoder, POST)


def test_members_and_weights_from_params(tmp_path: Path) -> None:
    models = {"ic_a": ModelParams(), "rr_a": ModelParams()}
    with pytest.raises(ConfigError, match="unknown model.*nope, gone"):
        resolve_members(EnsembleParams(members=("ic_a", "nope", "gone"), weights=()), models,
                        tmp_path)
    members = resolve_members(EnsembleParams(members=("ic_a", "rr_a"), weights=(2.0, 1.0)),
                              models, tmp_path)
    assert [(m.name, m.folder, m.weight) for m in members] == [
        ("ic_a", tmp_path / "ic_a", 2.0), ("rr_a", tmp_path / "rr_a", 1.0)]
    with pytest.raises(ConfigError, match="one weight per member"):
        EnsembleParams(members=("ic_a", "rr_a"), weights=(1.0,))
    with pytest.raises(ConfigError, match="more than once"):
        EnsembleParams(members=("ic_a", "ic_a"), weights=())


# --------------------------------------------------------------------------- real infer outputs


@pytest.fixture(scope="module")
def infer_outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny random models (one with a cue input, one without) run by the infer code on a
    tiny val split with GT boxes and two cues per box, written in the infer stage's layout."""
    root = tmp_path_factory.mktemp("ensemble")
    val = prepare_dataset(root / "dataset", DatasetParams(train_images=1, val_images=3),
                          progress=False)["val"]
    pose = PoseParams(width=4, data=PoseDataParams(input_width=48, input_height=64))
    boxes = gt_boxes(val)
    cue_records = []
    for ann in val.training_persons():  # two cue points per person, inside its box
        x, y, w, h = ann["bbox"]
        cue_records.append({"image_id": ann["image_id"], "cues": [
            [x + 0.5 * w, y + 0.3 * h, 0.9], [x + 0.45 * w, y + 0.7 * h, 0.5]]})
    boxes = with_cues(boxes, cues_inside(boxes, cue_records))
    torch.set_num_threads(1)
    ev = EvalParams(batch_size=16, workers=0, flip_test=True)
    for name, cue in (("ic_a", "point"), ("rr_a", "none")):
        spec = ModelSpec.from_params(pose, ModelParams(cue=cue, recurrent=False, seed=1),
                                     val.category["keypoints"], name)
        torch.manual_seed(0)
        net = spec.build().eval()
        files = inference_files(root / "infer" / name, "det")
        files["heatmaps"].parent.mkdir(parents=True)
        out = run_inference(net, spec, val, boxes, "GT boxes", files["heatmaps"],
                            Runtime(torch.device("cpu")), PredictSettings.of(ev),
                            PostSettings.of(ev, val))
        out.index.to_csv(files["index"], index=False)
        files["results"].write_text(json.dumps(out.results) + "\n")
        (files["heatmaps"].parent / "infer.json").write_text(
            json.dumps({"model": spec.to_json()}))
    return root


def test_one_member_equals_its_own_results_exactly(infer_outputs: Path) -> None:
    """Under the protocol of a member's results file (the report's: every cue's pose
    scored alike), an ensemble of that member alone gives exactly its results."""
    val = load_split(infer_outputs / "dataset", "val")
    post = PostSettings.of(dataclasses.replace(EV, neighbour_decay=1.0), val)
    for name in ("ic_a", "rr_a"):
        folder = infer_outputs / "infer" / name
        out = run_ensemble([Member(name, folder, 1.0)], "det", EV.decoder, post, chunk=7)
        stored = json.loads(inference_files(folder, "det")["results"].read_text())
        assert out.results == stored


def test_stage_writes_a_scorable_folder(infer_outputs: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    params = yaml.safe_load((ROOT / "params.smoke.yaml").read_text())
    params["models"] = {"ic_a": {"cue": "point"}, "rr_a": {}}
    params["ensemble"]["members"] = ["ic_a", "rr_a"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    folder = infer_outputs / "infer"
    for mode in ("gt",):  # the fixture ran det only: give gt the same files
        for name in ("ic_a", "rr_a"):
            det, gt = inference_files(folder / name, "det"), inference_files(folder / name, mode)
            for key in ("heatmaps", "index"):
                gt[key].write_bytes(det[key].read_bytes())
    out, details = tmp_path / "ensemble", tmp_path / "metrics" / "ensemble.json"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")
    argv = ["ensemble.py", "--params", str(tmp_path / "params.yaml"), "--dataset",
            str(infer_outputs / "dataset"), "--infer", str(folder), "--out", str(out),
            "--details", str(details)]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ROOT / "stages" / "ensemble.py"), run_name="__main__")
    assert sorted(p.name for p in out.iterdir()) == [
        "ensemble.json", "instances_det.csv", "instances_gt.csv", "results_det.json",
        "results_gt.json"]
    stats = json.loads(details.read_text())
    cue_rows = len(pd.read_csv(inference_files(folder / "ic_a", "det")["index"]))
    assert stats["det"]["instances"] == cue_rows and stats["det"]["broadcast_per_box"] == 1
    settings = json.loads((out / "ensemble.json").read_text())
    assert settings["runs"]["det"]["broadcast_per_box"] == ["rr_a"]
    assert (json.loads((out / "results_det.json").read_text())
            == json.loads((out / "results_gt.json").read_text()))
    # an unknown member stops the stage and leaves the earlier output alone
    params["ensemble"]["members"] = ["ic_a", "nope"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SystemExit):
        runpy.run_path(str(ROOT / "stages" / "ensemble.py"), run_name="__main__")
    assert (out / "results_det.json").is_file()
    # the report's rule ignores ensemble.members: here only ic_a takes a cue or recurs
    report = tmp_path / "ensemble_report"
    monkeypatch.setattr(sys, "argv", [*argv[:-4], "--out", str(report), "--details",
                                      str(tmp_path / "report.json"), "--report-rule"])
    runpy.run_path(str(ROOT / "stages" / "ensemble.py"), run_name="__main__")
    settings = json.loads((report / "ensemble.json").read_text())
    assert list(settings["members"]) == ["ic_a"] and settings["rule"] == "report"
    assert settings["ensemble"] == {"chunk": params["ensemble"]["chunk"]}


def test_report_rule_is_every_hintpose_model_equally(tmp_path: Path) -> None:
    """The report's ensemble (the ensemble_report stage): every model with a cue input or
    recurrent refinement, equal weights, whatever ``ensemble.members`` says."""
    models = {"baseline": ModelParams(), "ic_a": ModelParams(cue="point"),
              "rr_a": ModelParams(recurrent=True),
              "icrr_a": ModelParams(cue="point", recurrent=True)}
    members = report_rule_members(models, tmp_path)
    assert [(m.name, m.folder, m.weight) for m in members] == [
        ("ic_a", tmp_path / "ic_a", 1.0), ("rr_a", tmp_path / "rr_a", 1.0),
        ("icrr_a", tmp_path / "icrr_a", 1.0)]
    with pytest.raises(ConfigError, match="report's ensemble needs a model.*baseline"):
        report_rule_members({"baseline": ModelParams()}, tmp_path)
