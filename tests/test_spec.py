"""A pose model's description (ModelSpec) and its cue types (hintpose.topdown.conditioning)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from hintpose.config import ModelParams, PoseParams
from hintpose.errors import DataError
from hintpose.models.folder import save_network
from hintpose.topdown.conditioning import (
    CUE_KINDS,
    CUES,
    Conditioning,
    DiskCue,
    PointCue,
    conditioning,
)
from hintpose.topdown.inference import load_pose_model
from hintpose.topdown.spec import LIMITS, ModelSpec

NAMES = [f"j{i}" for i in range(17)]


def spec(**changes: object) -> ModelSpec:
    base = ModelSpec.from_params(PoseParams(width=4, hops=2), ModelParams(cue="point",
                                                                          recurrent=True),
                                 NAMES, "icrr")
    return replace(base, **changes)  # type: ignore[arg-type]


def test_spec_round_trips_through_model_json_and_builds_its_parts() -> None:
    s = spec()
    record = json.loads(json.dumps(s.to_json()))
    assert record["cue"] == "point" and record["num_joints"] == 17 and record["hops"] == 2
    assert ModelSpec.from_json(record, "model.json") == s
    assert s.codec.heatmap_size == (s.input_width // 4, s.input_height // 4)
    assert s.data_params().input_width == s.input_width and s.decoder == "dark"
    net = s.build()
    assert net.takes_cue and net.num_outputs == 2
    assert ModelSpec.from_params(PoseParams(), ModelParams(), NAMES).hops == 1  # not recurrent


def test_earlier_model_json_files_load() -> None:
    """Files written before the cue types (``instance_cue: true|false``, no ``init``)."""
    record = spec().to_json()
    del record["cue"], record["init"], record["name"]
    for flag, cue in ((True, "point"), (False, "none")):
        old = ModelSpec.from_json({**record, "instance_cue": flag}, "old/model.json")
        assert old.cue == cue and old.init == "official" and old.name == ""


@pytest.mark.parametrize(("change", "message"), [
    ({"keypoint_names": None}, "missing keypoint_names"),
    ({"keypoint_names": []}, "keypoint_names must be a non-empty list"),
    ({"keypoint_names": [1, 2]}, "keypoint_names must be a non-empty list"),
    ({"width": 100000}, "width must be an integer in \\[1, 256\\]"),
    ({"width": True}, "width must be an integer"),
    ({"input_width": 10**6}, "input_width must be an integer"),
    ({"hops": 0}, "hops must be"),
    ({"modules": [1, 1]}, "modules must be three integers"),
    ({"cue": "box"}, "cue must be one of none, point, disk"),
    ({"recurrent": "yes"}, "recurrent must be true or false"),
    ({"sigma": -1}, "sigma must be a positive number"),
    ({"num_joints": 5}, "num_joints must be the number of keypoint_names"),
])
def test_bad_model_json_is_one_error_naming_file_and_key(change: dict, message: str) -> None:
    record = spec().to_json()
    for key, value in change.items():
        if value is None:
            del record[key]
        else:
            record[key] = value
    with pytest.raises(DataError, match=f"bad/model.json: .*{message}"):
        ModelSpec.from_json(record, "bad/model.json")
    with pytest.raises(DataError, match="not a pose model description"):
        ModelSpec.from_json([1, 2], "bad/model.json")
    assert LIMITS["width"] == 256


def test_a_huge_model_json_is_refused_before_any_network_is_built(tmp_path: Path) -> None:
    """The limits are checked on the description, before the network (and its memory)."""
    net = spec().build()
    save_network(tmp_path, net, {**spec().to_json(), "width": 100000})
    with pytest.raises(DataError, match="model.json: width must be"):
        load_pose_model(tmp_path)


def test_cue_types_are_registered_by_name() -> None:
    assert CUE_KINDS == ("none", "point", "disk") and set(CUES) == set(CUE_KINDS)
    assert isinstance(conditioning("point"), PointCue)
    with pytest.raises(ValueError, match="unknown cue type 'box' \\(known: none, point, disk\\)"):
        conditioning("box")
    none = conditioning("none")
    assert not none.takes_input and none.network_block(64) is None
    assert none.render(np.zeros(2), (48, 64), 4.0) is None
    assert none.train_point(np.random.default_rng(0), np.zeros((17, 2)), np.ones((17, 1)),
                            (48, 64), 2.0) is None


def test_point_cue_draws_renders_and_merges() -> None:
    cue = PointCue()
    joints = np.array([[10.0, 20.0], [30.0, 40.0]])
    weight = np.array([[0.0], [1.0]])
    point = cue.train_point(np.random.default_rng(0), joints, weight, (48, 64), 0.0)
    assert np.array_equal(point, [30.0, 40.0])  # the only labeled joint, no jitter
    assert np.array_equal(cue.train_point(np.random.default_rng(0), joints, 0 * weight,
                                          (48, 64), 2.0), [24.0, 32.0])  # none: the centre
    shift = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, -3.0]])
    assert np.allclose(cue.eval_point((10.0, 10.0), shift, (48, 64)), [15.0, 7.0])
    assert np.array_equal(cue.eval_point(None, shift, (48, 64)), [24.0, 32.0])
    rendered = cue.render(np.array([30.0, 40.0]), (48, 64), 4.0)
    assert rendered.shape == (1, 64, 48) and rendered.dtype == np.float32
    assert np.unravel_index(rendered.argmax(), rendered.shape) == (0, 40, 30)
    block = cue.network_block(64)
    assert cue.weight_prefix == "cue_block."
    features, maps = torch.randn(2, 64, 16, 12), torch.rand(2, 1, 64, 48)
    assert torch.equal(cue.merge(block, features, maps), features)  # zero-initialised
    assert torch.equal(cue.flip(maps), maps.flip(3))


def test_a_cue_type_is_one_subclass() -> None:
    """What a new cue type has to provide: the base class's interface, nothing elsewhere."""
    hooks = {"train_point", "eval_point", "render", "flip", "network_block", "merge"}
    assert hooks <= set(vars(Conditioning)) and hooks & set(vars(PointCue)) >= hooks - {"flip"}


def test_disk_cue_is_a_hard_mark_at_the_point() -> None:
    """The example of a second cue type: one subclass, selected by ``cue: disk``."""
    disk = conditioning("disk")
    assert isinstance(disk, DiskCue) and disk.takes_input and disk.probe
    rendered = disk.render(np.array([20.0, 30.0]), (48, 64), 3.0)
    assert rendered.shape == (1, 64, 48) and set(np.unique(rendered)) == {0.0, 1.0}
    assert rendered[0, 30, 20] == 1 and rendered[0, 30, 24] == 0 and rendered.sum() == 29
    net = spec(cue="disk").build()
    out = net(torch.zeros(1, 3, 64, 48), torch.from_numpy(rendered)[None])
    assert len(out) == 2 and net.cue_block is not None
    assert ModelParams(cue="disk").cue == "disk"  # a params value
