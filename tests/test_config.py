"""params.yaml validation: every bad value is one message naming the key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hintpose.config import Params, load_params
from hintpose.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", ["params.yaml", "params.smoke.yaml"])
def test_shipped_params_load(name: str) -> None:
    params = load_params(ROOT / name)
    assert isinstance(params, Params)


def test_defaults_fill_missing_keys(tmp_path: Path) -> None:
    params = load_params(write(tmp_path, {"pose": {"data": {"sigma": 3}}}))
    assert params.pose.data.sigma == 3.0 and isinstance(params.pose.data.sigma, float)
    assert params.pose.data.input_width == 96


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"pose": {"data": {"sigma": -1}}}, "params.yaml: pose.data.sigma must be > 0, got -1.0"),
        ({"pose": {"data": {"sigmaa": 2}}}, "params.yaml: pose.data.sigmaa is not a known key"),
        ({"bogus": 1}, "params.yaml: bogus is not a known key"),
        ({"pose": {"modules": [1, 1]}}, "params.yaml: pose.modules must be a list of 3 values"),
        ({"pose": {"modules": [1, 0, 1]}}, "params.yaml: pose.modules must be >= 1"),
        ({"pose": {"modules": [1, 1, 1], "blocks": 2, "pretrained": "w32.pth"}},
         "params.yaml: pose.modules [1, 1, 1] and blocks 2 must be the official HRNet layout"),
        ({"pose": {"data": {"input_width": "96"}}},
         "params.yaml: pose.data.input_width must be an integer, got '96'"),
        ({"pose": {"data": {"input_width": True}}},
         "params.yaml: pose.data.input_width must be an integer"),
        ({"pose": {"data": {"flip": 1}}}, "params.yaml: pose.data.flip must be true or false"),
        ({"dataset": {"kind": "voc"}}, "params.yaml: dataset.kind must be one of 'synthetic'"),
        ({"dataset": {"train_images": 0}}, "params.yaml: dataset.train_images must be >= 1"),
        ({"pose": {"data": {"rotation_prob": 1.5}}},
         "params.yaml: pose.data.rotation_prob must be <= 1"),
        ({"pose": [1, 2]}, "params.yaml: pose must be a mapping"),
        ([1, 2], "params.yaml: the file must be a mapping"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, data: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_params(write(tmp_path, data))
    assert str(info.value).startswith(message), str(info.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such params file"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("pose: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_models_section(tmp_path: Path) -> None:
    params = load_params(write(tmp_path, {}))
    assert set(params.models) == {"baseline", "ic_a", "ic_b", "rr_a", "rr_b", "icrr_a", "icrr_b"}
    assert params.models["icrr_b"].instance_cue and params.models["icrr_b"].recurrent
    assert params.models["ic_a"].seed != params.models["ic_b"].seed
    with pytest.raises(ConfigError, match="params.yaml: models.x/: a model name may use only"):
        load_params(write(tmp_path, {"models": {"x/": {}}}))
    with pytest.raises(ConfigError, match="params.yaml: models.m.instance_cue must be true"):
        load_params(write(tmp_path, {"models": {"m": {"instance_cue": "yes"}}}))
    with pytest.raises(ConfigError, match="params.yaml: models.m.cue is not a known key"):
        load_params(write(tmp_path, {"models": {"m": {"cue": True}}}))


def test_eval_section(tmp_path: Path) -> None:
    params = load_params(write(tmp_path, {}))
    assert params.eval.min_box_size == 32 and params.eval.nms_thr == 0.9
    assert params.eval.in_vis_thr == 0.2 and not params.eval.soft_nms
    assert params.eval.flip_test  # HRNet's default; the shipped 30-minute preset turns it off
    shipped = load_params(ROOT / "params.yaml").eval
    assert shipped.min_box_size == 32 and not shipped.flip_test
    with pytest.raises(ConfigError, match="params.yaml: eval.nms_thr must be > 0, got 0.0"):
        load_params(write(tmp_path, {"eval": {"nms_thr": 0}}))
    with pytest.raises(ConfigError, match="params.yaml: eval.score_thr must be <= 1, got 2.0"):
        load_params(write(tmp_path, {"eval": {"score_thr": 2}}))
    with pytest.raises(ConfigError, match="params.yaml: eval.soft_nms must be true or false"):
        load_params(write(tmp_path, {"eval": {"soft_nms": "yes"}}))
    with pytest.raises(ConfigError, match="params.yaml: eval.batch_size must be >= 1"):
        load_params(write(tmp_path, {"eval": {"batch_size": 0}}))
