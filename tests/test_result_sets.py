"""The score stage's result sets: each model's results files found in its infer folder, the
``NAME=DIR`` / ``NAME:BOXES=FILE`` specs parsed, and a bad spec or a missing file stopped with
one message before anything is scored."""

from __future__ import annotations

from pathlib import Path

import pytest

from hintpose.errors import ConfigError, DataError
from hintpose.scoring.result_sets import model_result_sets, parse_result_set, result_sets


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[]")
    return path


@pytest.fixture
def infer(tmp_path: Path) -> Path:
    """An infer folder: a baseline (both box modes) and a cue model with cue-aware results."""
    root = tmp_path / "infer"
    for boxes in ("det", "gt"):
        touch(root / "baseline" / f"results_{boxes}.json")
        touch(root / "ic_a" / f"results_{boxes}.json")
        touch(root / "ic_a" / f"results_{boxes}_cueaware.json")
    return root


def test_models_give_both_box_modes_and_their_cue_aware_sets(infer: Path) -> None:
    sets = model_result_sets(infer, ["baseline", "ic_a"])
    assert [(name, boxes) for name, boxes, _ in sets] == [
        ("baseline", "det"), ("baseline", "gt"),
        ("ic_a", "det"), ("ic_a_cueaware", "det"), ("ic_a", "gt"), ("ic_a_cueaware", "gt")]
    assert sets[3][2] == infer / "ic_a" / "results_det_cueaware.json"
    assert all(path.is_file() for _, _, path in sets)


def test_folder_spec_takes_the_box_modes_it_holds(tmp_path: Path) -> None:
    touch(tmp_path / "ensemble" / "results_det.json")
    assert parse_result_set(f"ensemble={tmp_path / 'ensemble'}") == [
        ("ensemble", "det", tmp_path / "ensemble" / "results_det.json")]
    touch(tmp_path / "ensemble" / "results_gt.json")
    assert [b for _, b, _ in parse_result_set(f"ensemble={tmp_path / 'ensemble'}")] == [
        "det", "gt"]


def test_file_spec_names_its_box_mode(tmp_path: Path) -> None:
    path = touch(tmp_path / "refined_gt.json")
    assert parse_result_set(f"ensemble_posefix:gt={path}") == [("ensemble_posefix", "gt", path)]


def test_models_come_first_then_the_specs_in_order(infer: Path, tmp_path: Path) -> None:
    path = touch(tmp_path / "posefix.json")
    touch(tmp_path / "ens" / "results_gt.json")
    sets = result_sets(infer, ["baseline"], [f"ensemble_posefix:det={path}",
                                             f"ensemble={tmp_path / 'ens'}"])
    assert [(n, b) for n, b, _ in sets] == [("baseline", "det"), ("baseline", "gt"),
                                            ("ensemble_posefix", "det"), ("ensemble", "gt")]


@pytest.mark.parametrize("spec", [
    "ensemble",                    # no '='
    "ensemble:det",                # no '='
    "baseline=data/infer/x",       # a model is found from --infer, not given
    "ensemble:val=results.json",   # not a box mode
    "Ensemble=dir",                # names are exact
])
def test_bad_spec_is_a_config_error(spec: str) -> None:
    with pytest.raises(ConfigError, match=rf"--results '{spec}': expected NAME=DIR or "
                                          r"NAME:BOXES=FILE with NAME one of ensemble, "
                                          r"ensemble_report, ensemble_posefix and BOXES det "
                                          r"or gt"):
        parse_result_set(spec)


def test_missing_files_are_data_errors(infer: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing.json: results of ensemble_posefix with det "
                                        r"boxes not found"):
        parse_result_set(f"ensemble_posefix:det={tmp_path / 'missing.json'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no results_det.json or results_gt.json for "
                                        r"ensemble"):
        parse_result_set(f"ensemble={tmp_path / 'empty'}")
    with pytest.raises(DataError, match=r"rr_a: inference output of model 'rr_a' not found "
                                        r"\(run infer@rr_a\)"):
        model_result_sets(infer, ["baseline", "rr_a"])
    (infer / "baseline" / "results_gt.json").unlink()
    with pytest.raises(DataError, match=r"results_gt.json: results of model 'baseline' with "
                                        r"gt boxes not found \(run infer@baseline\)"):
        result_sets(infer, ["baseline"], [])
