"""params.yaml validation: every bad value is one message naming the key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hintpose.config import ModelParams, Params, load_params
from hintpose.errors import ConfigError
from hintpose.settings import build, field_paths

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def leaf_paths(data: dict, prefix: str = "") -> set[str]:
    """Dotted key paths of the leaves of a YAML mapping (``models`` and mapping-valued
    settings such as ``posefix.error_mix`` left as one key)."""
    out: set[str] = set()
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in ("models", "posefix.error_mix"):
            out |= leaf_paths(value, path + ".")
        else:
            out.add(path)
    return out


@pytest.mark.parametrize("name", ["params.yaml", "params.smoke.yaml"])
def test_shipped_params_load(name: str) -> None:
    """Each shipped file loads, and what is loaded is what the file says."""
    raw = yaml.safe_load((ROOT / name).read_text())
    params = load_params(ROOT / name)
    assert type(params) is Params
    assert params.runtime.procs == raw["runtime"]["procs"]
    assert params.pose.width == raw["pose"]["width"]
    assert list(params.pose.modules) == raw["pose"]["modules"]
    assert params.pose.train.lr == pytest.approx(raw["pose"]["train"]["lr"])
    assert list(params.ensemble.members) == raw["ensemble"]["members"]
    assert set(params.models) == set(raw["models"])
    for name_, entry in raw["models"].items():
        assert params.models[name_] == ModelParams(**entry)
    assert params.dataset.synthetic.person_height_max == pytest.approx(
        raw["dataset"]["synthetic"]["person_height_max"])


def test_params_yaml_lists_every_settings_key_and_no_other() -> None:
    """params.yaml is the complete, documented list of settings: every leaf field of Params
    appears in it, and it has no key Params does not know. ``models`` is a mapping of model
    entries: each entry lists every ModelParams field."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    in_file = leaf_paths(raw)
    known = field_paths(Params)
    assert "models" in known and "runtime.device" in known and "pose.data.sigma" in known
    assert not known - in_file, f"settings missing from params.yaml: {sorted(known - in_file)}"
    assert not in_file - known, f"unknown keys in params.yaml: {sorted(in_file - known)}"
    model_keys = field_paths(ModelParams)
    assert raw["models"], "params.yaml lists no model"
    for name, entry in raw["models"].items():
        assert set(entry) == model_keys, f"models.{name}: keys {sorted(entry)}"


def test_dataclass_defaults_equal_params_yaml() -> None:
    """A params file may leave out any key: the defaults are the committed values."""
    defaults = build(Params, {})
    shipped = load_params(ROOT / "params.yaml")
    for section in ("runtime", "dataset", "detector", "pose", "models", "eval", "multiposenet",
                    "cues", "ensemble", "posefix"):  # one section at a time: a clear diff
        assert getattr(defaults, section) == getattr(shipped, section), section
    assert defaults == shipped


def test_defaults_fill_missing_keys(tmp_path: Path) -> None:
    params = load_params(write(tmp_path, {"pose": {"data": {"sigma": 5}}}))
    assert params.pose.data.sigma == 5.0 and type(params.pose.data.sigma) is float
    assert params.pose.data.input_width == 72 and params.pose.data.input_height == 96
    assert params.pose.width == 16 and params.runtime.device == "auto"


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
        # upper bounds on sizes and counts (a typo must not start a run of terabytes or years)
        ({"pose": {"data": {"input_width": 100_000}}},
         "params.yaml: pose.data.input_width must be <= 2048, got 100000"),
        ({"dataset": {"train_images": 10**9}},
         "params.yaml: dataset.train_images must be <= 1000000, got 1000000000"),
        ({"dataset": {"val_images": 10**7}}, "params.yaml: dataset.val_images must be <= 1000000"),
        ({"pose": {"train": {"epochs": 10**6}}}, "params.yaml: pose.train.epochs must be <= 1000"),
        ({"pose": {"train": {"batch_size": 10**6}}},
         "params.yaml: pose.train.batch_size must be <= 4096"),
        ({"pose": {"width": 100_000}}, "params.yaml: pose.width must be <= 256"),
        ({"pose": {"hops": 1000}}, "params.yaml: pose.hops must be <= 16"),
        ({"pose": {"pretrain": {"max_samples": 10**12}}},
         "params.yaml: pose.pretrain.max_samples must be <= 20000000"),
        ({"multiposenet": {"input_width": 32 * 1000}},
         "params.yaml: multiposenet.input_width must be <= 2048"),
        ({"posefix": {"input_height": 32 * 1000}},
         "params.yaml: posefix.input_height must be <= 2048"),
        ({"detector": {"train": {"val_images": 10**9}}},
         "params.yaml: detector.train.val_images must be <= 2000000"),
        ({"eval": {"batch_size": 10**6}}, "params.yaml: eval.batch_size must be <= 4096"),
        ({"ensemble": {"chunk": 10**7}}, "params.yaml: ensemble.chunk must be <= 65536"),
        ({"runtime": {"procs": 1000}}, "params.yaml: runtime.procs must be <= 64"),
        ({"dataset": {"synthetic": {"image_width": 100_000}}},
         "params.yaml: dataset.synthetic.image_width must be <= 4096"),
        ({"models": {"m": {"seed": 2**70}}},
         "params.yaml: models.m.seed must be <= 2147483647"),
        # a huge value is shown cut to 80 characters
        ({"ensemble": {"members": [["lol"] * 5000]}},
         "params.yaml: ensemble.members[0] must be a string, got ['lol', 'lol', 'lol', 'lol',"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, data: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_params(write(tmp_path, data))
    assert str(info.value).startswith(message), str(info.value)
    assert len(str(info.value)) < 300


def billion_laughs(levels: int = 9) -> str:
    """A YAML flow list of a few hundred bytes whose aliases of aliases expand to 9 ** levels
    strings (billion laughs)."""
    rows = ["&a0 [" + ", ".join(["lol"] * 9) + "]"]
    rows += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(rows) + "]"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("runtime: " + billion_laughs() + "\n", "its YAML expands to more than 100,000 values "
         "(aliases of aliases: an alias bomb?); write the values out"),
        ("ensemble:\n  members: " + billion_laughs() + "\n", "its YAML expands to more than"),
        ("runtime: &r {procs: 1, x: *r}\n", "line 1: a YAML alias refers to a value that "
         "contains it (recursive alias)"),
        ("runtime: " + "[" * 100_000 + "]" * 100_000 + "\n", "not valid YAML (nested too deeply)"),
        ("runtime: {procs: " + "9" * 5000 + "}\n", "not valid YAML (Exceeds the limit"),
    ],
    ids=["alias bomb as runtime", "alias bomb in ensemble.members", "recursive alias",
         "100,000-level nesting", "a 5000-digit integer"],
)
def test_hostile_yaml_is_refused_at_once(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)[:500]


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("ensemble:\n  members: &six [ic_a, ic_b, rr_a, rr_b, icrr_a, icrr_b]\n"
                    "  weights: []\nbox_removal:\n  models: *six\n")
    params = load_params(path)
    assert params.box_removal.models == params.ensemble.members == (
        "ic_a", "ic_b", "rr_a", "rr_b", "icrr_a", "icrr_b")


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
    assert params.models["icrr_b"].cue == "point" and params.models["icrr_b"].recurrent
    assert params.models["ic_a"].seed != params.models["ic_b"].seed
    with pytest.raises(ConfigError, match="params.yaml: models.x/: a model name may use only"):
        load_params(write(tmp_path, {"models": {"x/": {}}}))
    with pytest.raises(ConfigError, match="params.yaml: models.m.recurrent must be true"):
        load_params(write(tmp_path, {"models": {"m": {"recurrent": "yes"}}}))
    with pytest.raises(ConfigError, match="params.yaml: models.m.cue must be a string, got True"):
        load_params(write(tmp_path, {"models": {"m": {"cue": True}}}))
    with pytest.raises(ConfigError, match="params.yaml: models.m.instance_cue is not a known"):
        load_params(write(tmp_path, {"models": {"m": {"instance_cue": True}}}))


def test_eval_section(tmp_path: Path) -> None:
    params = load_params(write(tmp_path, {}))
    assert params.eval.nms_thr == 0.9 and params.eval.in_vis_thr == 0.2
    assert not params.eval.soft_nms
    assert not params.eval.flip_test  # off in the 30-minute default (HRNet's is on)
    assert load_params(write(tmp_path, {"eval": {"flip_test": True}})).eval.flip_test
    # The one box filter is the detector's (detect writes only the boxes that pass it).
    assert params.detector.min_box_size == 32 and params.detector.score_thr == 0.2
    with pytest.raises(ConfigError, match="params.yaml: eval.nms_thr must be > 0, got 0.0"):
        load_params(write(tmp_path, {"eval": {"nms_thr": 0}}))
    for gone in ("min_box_size", "score_thr", "procs", "threads"):
        with pytest.raises(ConfigError, match=f"params.yaml: eval.{gone} is not a known key"):
            load_params(write(tmp_path, {"eval": {gone: 1}}))
    with pytest.raises(ConfigError, match="params.yaml: detector.score_thr must be <= 1, got 2.0"):
        load_params(write(tmp_path, {"detector": {"score_thr": 2}}))
    with pytest.raises(ConfigError, match="params.yaml: eval.soft_nms must be true or false"):
        load_params(write(tmp_path, {"eval": {"soft_nms": "yes"}}))
    with pytest.raises(ConfigError, match="params.yaml: eval.batch_size must be >= 1"):
        load_params(write(tmp_path, {"eval": {"batch_size": 0}}))


def test_runtime_section(tmp_path: Path) -> None:
    """One ``runtime`` section for every network replaces the per-section device, bf16,
    channels_last, procs and threads keys."""
    params = load_params(write(tmp_path, {"runtime": {"device": "cpu", "procs": 1}}))
    assert params.runtime.device == "cpu" and params.runtime.procs == 1
    assert params.runtime.bf16 and params.runtime.channels_last and params.runtime.threads == 0
    with pytest.raises(ConfigError, match="params.yaml: runtime.device must be one of 'auto'"):
        load_params(write(tmp_path, {"runtime": {"device": "tpu"}}))
    with pytest.raises(ConfigError, match="params.yaml: runtime.procs must be >= 1, got 0"):
        load_params(write(tmp_path, {"runtime": {"procs": 0}}))
    for old in ({"pose": {"device": "cpu"}}, {"detector": {"device": "cpu"}},
                {"multiposenet": {"device": "cpu"}}, {"posefix": {"device": "cpu"}},
                {"pose": {"train": {"bf16": False}}}, {"pose": {"train": {"procs": 2}}},
                {"multiposenet": {"train": {"threads": 1}}}):
        section = next(iter(old))
        with pytest.raises(ConfigError, match=f"params.yaml: {section}.* is not a known key"):
            load_params(write(tmp_path, old))
