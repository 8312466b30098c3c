"""A pose model's whole description in one frozen object, the only source of its parts.

``ModelSpec`` is written to a model folder's ``model.json`` by the train stages and read back
by everything that uses the model (inference, the ensemble, the cue probe, the report). It
builds the codec (targets and decoding), the crop settings and the network, so that none of
them is re-derived elsewhere. Files of earlier versions (``instance_cue: true|false`` instead
of ``cue``) load; anything else that does not fit is one DataError naming the file and key.
Imports no torch (a stage reads ``model.json`` before it relaunches itself).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hintpose.errors import DataError
from hintpose.topdown.codec import TARGETS, HeatmapCodec
from hintpose.topdown.conditioning import CUE_KINDS, Conditioning, conditioning
from hintpose.topdown.params import PoseDataParams, PoseParams

if TYPE_CHECKING:
    from hintpose.config import ModelParams
    from hintpose.models.hintpose import HintPose



def _upper(cls: type, name: str) -> int:
    """The ``max`` of a settings field: a model.json holds what params could have made."""
    return int(next(f for f in dataclasses.fields(cls) if f.name == name).metadata["max"])


#: Upper bounds a description is checked against before any network is built (a model.json
#: of width 100000 would otherwise take all memory before its weights are even read): the
#: bounds of the params that made it (hintpose.topdown.params), and at most 1000 joints.
LIMITS = {"width": _upper(PoseParams, "width"), "hops": _upper(PoseParams, "hops"),
          "blocks": _upper(PoseParams, "blocks"), "modules": _upper(PoseParams, "modules"),
          "input_width": _upper(PoseDataParams, "input_width"),
          "input_height": _upper(PoseDataParams, "input_height"), "num_joints": 1000}


@dataclass(frozen=True)
class ModelSpec:
    """Network, crops, targets and cue of one pose model (``model.json``)."""

    width: int
    modules: tuple[int, ...]
    blocks: int
    init: str
    #: A cue type of hintpose.topdown.conditioning (``none``: plain HRNet).
    cue: str
    recurrent: bool
    #: Outputs of the network: ``pose.hops`` for a recurrent model, else 1.
    hops: int
    keypoint_names: tuple[str, ...]
    input_width: int
    input_height: int
    sigma: float
    target: str
    cue_sigma: float
    box_padding: float
    seed: int = 0
    #: The entry of ``models`` it was trained as (empty for the pretrained HRNet).
    name: str = ""

    @classmethod
    def from_params(cls, pose: PoseParams, model: ModelParams, keypoint_names: Sequence[str],
                    name: str = "") -> ModelSpec:
        """The description of ``models.<name>`` (``model``) under the ``pose`` settings."""
        d = pose.data
        return cls(width=pose.width, modules=tuple(pose.modules), blocks=pose.blocks,
                   init=pose.init, cue=model.cue, recurrent=model.recurrent,
                   hops=pose.hops if model.recurrent else 1,
                   keypoint_names=tuple(keypoint_names), input_width=d.input_width,
                   input_height=d.input_height, sigma=d.sigma, target=d.target,
                   cue_sigma=d.cue_sigma, box_padding=d.box_padding, seed=model.seed, name=name)

    # ----------------------------------------------------------------------- model.json
    def to_json(self) -> dict[str, Any]:
        """The ``model.json`` record (lists for tuples)."""
        out = dataclasses.asdict(self)
        out["modules"], out["keypoint_names"] = list(self.modules), list(self.keypoint_names)
        out["num_joints"] = self.num_joints
        return out

    @classmethod
    def from_json(cls, record: Any, source: str | Path) -> ModelSpec:
        """Read a ``model.json`` record (``source`` names the file in errors)."""
        if not isinstance(record, dict):
            raise DataError(f"{source}: not a pose model description (a JSON object)")
        rec = dict(record)
        if "cue" not in rec and isinstance(rec.get("instance_cue"), bool):  # earlier files
            rec["cue"] = "point" if rec["instance_cue"] else "none"
        rec.setdefault("init", "official")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        missing = [k for k, f in fields.items()
                   if k not in rec and f.default is dataclasses.MISSING]
        if missing:
            raise DataError(f"{source}: not a pose model description (missing "
                            f"{', '.join(missing)}; retrain the model)")

        def bad(key: str, want: str) -> DataError:
            return DataError(f"{source}: {key} must be {want}, got {str(rec[key])[:60]!r}")

        for key in ("width", "blocks", "hops", "input_width", "input_height", "seed"):
            v = rec[key] if key in rec else 0
            low = 0 if key == "seed" else 1
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= LIMITS.get(
                    key, 2**31):
                raise bad(key, f"an integer in [{low}, {LIMITS.get(key, 2**31)}]")
        mods = rec["modules"]
        if (not isinstance(mods, list) or len(mods) != 3
                or not all(isinstance(m, int) and 1 <= m <= LIMITS["modules"] for m in mods)):
            raise bad("modules", f"three integers in [1, {LIMITS['modules']}]")
        names = rec["keypoint_names"]
        if (not isinstance(names, list) or not 1 <= len(names) <= LIMITS["num_joints"]
                or not all(isinstance(n, str) for n in names)):
            raise bad("keypoint_names", "a non-empty list of joint names")
        if "num_joints" in rec and rec["num_joints"] != len(names):
            raise bad("num_joints", f"the number of keypoint_names ({len(names)})")
        for key in ("sigma", "cue_sigma", "box_padding"):
            if isinstance(rec[key], bool) or not isinstance(rec[key], int | float) or not (
                    0 < rec[key] < 1e4):
                raise bad(key, "a positive number")
        if rec["cue"] not in CUE_KINDS:
            raise bad("cue", f"one of {', '.join(CUE_KINDS)}")
        if rec["target"] not in TARGETS:
            raise bad("target", f"one of {', '.join(TARGETS)}")
        if rec["init"] not in ("official", "he"):
            raise bad("init", "official or he")
        if not isinstance(rec["recurrent"], bool):
            raise bad("recurrent", "true or false")
        values = {k: rec[k] for k in fields if k in rec}
        values.update(modules=tuple(mods), keypoint_names=tuple(names),
                      sigma=float(rec["sigma"]), cue_sigma=float(rec["cue_sigma"]),
                      box_padding=float(rec["box_padding"]), name=str(rec.get("name", "")))
        return cls(**values)

    # ----------------------------------------------------------------------- derived parts
    @property
    def num_joints(self) -> int:
        return len(self.keypoint_names)

    @property
    def conditioning(self) -> Conditioning:
        """The cue type (hintpose.topdown.conditioning)."""
        return conditioning(self.cue)

    @property
    def codec(self) -> HeatmapCodec:
        """Targets and decoding of the heatmaps (heatmap at 1/4 of the input)."""
        return HeatmapCodec.for_input(self.input_width, self.input_height, self.sigma,
                                      target=self.target)

    @property
    def decoder(self) -> str:
        """The decoder that matches the targets (DARK for unbiased ones): the learning
        curve's and the cue probe's during training."""
        return "dark" if self.target == "unbiased" else "hrnet"

    def data_params(self) -> PoseDataParams:
        """The crop, target and cue settings the model was trained with (inference crops)."""
        return PoseDataParams(input_width=self.input_width, input_height=self.input_height,
                              sigma=self.sigma, cue_sigma=self.cue_sigma,
                              box_padding=self.box_padding, target=self.target)

    def build(self) -> HintPose:
        """The network (weights as initialised; the caller seeds torch first)."""
        from hintpose.models.hintpose import HintPose

        return HintPose(self.width, self.cue, self.recurrent, hops=self.hops,
                        num_joints=self.num_joints, modules=self.modules, blocks=self.blocks,
                        init=self.init)
