"""Heatmap ensemble: per (box, cue) instance, the weighted mean of the members' heatmaps.

Each member is an ``infer@<model>`` output folder (see
``hintpose.topdown.outputs.inference_files``): float16 heatmaps (N, J, h, w) with an instance
index whose row i describes heatmap i. A model with an instance-cue input has one row per
(box, cue); a model without one has one row per box, and its heatmap of a box joins the
average of every cue of that box. Members must have run on the same boxes with the same crops
and heatmap size.

The heatmaps are streamed: ``chunk`` instances at a time are read with plain file reads (no
memory map, whose touched pages would count as resident memory), averaged and decoded through
``hintpose.topdown.postprocess.heatmaps_to_results``, the code path of a single model, so an
ensemble of one member reproduces that member's results exactly.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd

from hintpose.config import EnsembleParams
from hintpose.data.keypoints import COCO_SIGMAS
from hintpose.errors import ConfigError, DataError
from hintpose.io import read_json
from hintpose.topdown.outputs import InferenceRun, inference_files, read_instance_index
from hintpose.topdown.postprocess import (
    PostSettings,
    decode_heatmaps,
    heatmaps_to_results,
    keypoint_similarity,
)
from hintpose.topdown.spec import ModelSpec

#: Per-box columns that must agree between members (exactly, or within CROP_TOLERANCE px).
BOX_COLUMNS = ("image_id", "box_x", "box_y", "box_w", "box_h", "box_score")
CROP_COLUMNS = ("center_x", "center_y", "size_w", "size_h")
CROP_TOLERANCE = 1e-2


@dataclass(frozen=True)
class Member:
    """One ensemble member: a model name, its ``infer`` output folder and its weight."""

    name: str
    folder: Path
    weight: float


def resolve_members(params: EnsembleParams, models: Mapping[str, Any],
                    infer_dir: str | Path) -> list[Member]:
    """The members of ``params`` as folders under ``infer_dir``; a name that is not an entry
    of ``models`` is a ConfigError naming it."""
    unknown = [m for m in params.members if m not in models]
    if unknown:
        raise ConfigError(f"ensemble.members: unknown model(s) {', '.join(unknown)} (known: "
                          f"{', '.join(models) or 'none'})")
    weights = params.weights or (1.0,) * len(params.members)
    return [Member(name, Path(infer_dir) / name, float(w))
            for name, w in zip(params.members, weights, strict=True)]


def report_rule_members(models: Mapping[str, Any], infer_dir: str | Path) -> list[Member]:
    """The report's ensemble: every HintPose model of ``models`` (a cue input or recurrent
    refinement; in the default the two seeds of I.C., R.R. and I.C.+R.R.), equal weights.
    ``models`` without one is a ConfigError."""
    names = [name for name, m in models.items() if m.cue != "none" or m.recurrent]
    if not names:
        raise ConfigError(f"models: the report's ensemble needs a model with a cue or "
                          f"recurrent refinement (models: {', '.join(models) or 'none'})")
    return [Member(name, Path(infer_dir) / name, 1.0) for name in names]


class HeatmapFile:
    """Rows of a heatmap array stored as .npy (N, J, h, w), read with file reads on demand."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: heatmaps not found (run the infer stage)")
        self._file = self.path.open("rb")
        try:
            version = np.lib.format.read_magic(self._file)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(self._file)
        except ValueError as exc:
            self._file.close()
            raise DataError(f"{self.path}: not a .npy array file ({exc})") from None
        if len(shape) != 4 or fortran or dtype.kind != "f":
            self._file.close()
            raise DataError(f"{self.path}: expected a C-ordered float array (N, J, h, w), got "
                            f"shape {shape} of {dtype}{' (Fortran order)' if fortran else ''}")
        self.shape: tuple[int, int, int, int] = tuple(shape)  # type: ignore[assignment]
        self.dtype = dtype
        self._offset = self._file.tell()
        self._row = int(np.prod(shape[1:]))
        expected = self._offset + shape[0] * self._row * dtype.itemsize
        if self.path.stat().st_size < expected:
            self._file.close()
            raise DataError(f"{self.path}: truncated ({self.path.stat().st_size} bytes, the "
                            f"header promises {expected})")

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, index: np.ndarray) -> np.ndarray:
        """Heatmaps of the rows ``index`` (any order, repeats allowed), (len(index), J, h, w);
        each run of consecutive rows is one read."""
        index = np.asarray(index, dtype=np.int64)
        wanted, inverse = np.unique(index, return_inverse=True)
        out = np.empty((len(wanted), *self.shape[1:]), dtype=self.dtype)
        breaks = np.flatnonzero(np.diff(wanted) != 1) + 1
        start = 0
        for run in np.split(np.arange(len(wanted)), breaks):
            if len(run) == 0:
                continue
            first = int(wanted[run[0]])
            self._file.seek(self._offset + first * self._row * self.dtype.itemsize)
            view = out[start:start + len(run)]
            if self._file.readinto(memoryview(view).cast("B")) != view.nbytes:
                raise DataError(f"{self.path}: truncated while reading rows {first}..")
            start += len(run)
        return out[inverse.reshape(-1)]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> HeatmapFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@dataclass
class MemberInstances:
    """One member's instance index and heatmaps for a box mode."""

    member: Member
    index: pd.DataFrame
    heatmaps: HeatmapFile
    index_file: Path

    @property
    def per_box(self) -> bool:
        """One heatmap per box without a cue (a model without a cue input, or a cue model
        that had no cues): broadcast to every cue instance of the box."""
        return bool((self.index["cue_index"] < 0).all() and self.index["box_index"].is_unique)


def load_member(member: Member, boxes: str) -> MemberInstances:
    """A member's index and heatmaps for box mode ``boxes``, checked against each other."""
    if not member.folder.is_dir():
        raise DataError(f"{member.folder}: inference output of model {member.name!r} "
                        f"not found (run infer@{member.name})")
    files = inference_files(member.folder, boxes)
    index = read_instance_index(files["index"])
    heat = HeatmapFile(files["heatmaps"])
    if len(heat) != len(index):
        heat.close()
        raise DataError(f"{files['heatmaps']}: {len(heat)} heatmaps but {files['index']} has "
                        f"{len(index)} rows")
    if index.duplicated(["box_index", "cue_index"]).any():
        heat.close()
        raise DataError(f"{files['index']}: repeated (box_index, cue_index) rows")
    return MemberInstances(member, index, heat, files["index"])


def members_heatmap_sigma(members: Sequence[Member]) -> float:
    """The target sigma (heatmap pixels) the members were trained with, from their
    ``infer.json``: DARK's decoder smooths the averaged heatmaps with it. Members trained
    with different sigmas are a DataError naming them."""
    sigmas = {}
    for member in members:
        settings = read_json(member.folder / "infer.json", "inference settings")
        try:
            spec = ModelSpec.from_json(settings["model"], member.folder / "infer.json")
            sigmas[member.name] = spec.codec.sigma
        except DataError:
            raise
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{member.folder / 'infer.json'}: no model input size and sigma "
                            f"(rerun infer@{member.name})") from None
    if len(set(sigmas.values())) > 1:
        listed = ", ".join(f"{k}: {v:g}" for k, v in sigmas.items())
        raise DataError(f"ensemble members were trained with different heatmap sigmas "
                        f"({listed}); their heatmaps cannot be decoded as one")
    return next(iter(sigmas.values()), 1.0)


def _boxes_of(inst: MemberInstances) -> pd.DataFrame:
    return inst.index.groupby("box_index")[list(BOX_COLUMNS + CROP_COLUMNS)].first()


def _check_same_boxes(ref: MemberInstances, other: MemberInstances) -> None:
    """Members must share boxes, crops and heatmap size; otherwise a DataError naming both."""
    if ref.heatmaps.shape[1:] != other.heatmaps.shape[1:]:
        raise DataError(f"{other.heatmaps.path}: heatmaps of shape {other.heatmaps.shape[1:]} "
                        f"but {ref.heatmaps.path} has {ref.heatmaps.shape[1:]} (J, h, w); "
                        "ensemble members need the same joints and heatmap size")
    a, b = _boxes_of(ref), _boxes_of(other)
    if not a.index.equals(b.index):
        missing = sorted(set(a.index) ^ set(b.index))[:5]
        raise DataError(f"{other.index_file}: its boxes differ from those of {ref.index_file} "
                        f"(box_index {missing} in only one); ensemble members must run on the "
                        "same detections")
    same_box = (a["image_id"].to_numpy() == b["image_id"].to_numpy()) & np.isclose(
        a[list(BOX_COLUMNS[1:])].to_numpy(), b[list(BOX_COLUMNS[1:])].to_numpy(),
        rtol=0, atol=CROP_TOLERANCE).all(axis=1)
    same_crop = np.isclose(a[list(CROP_COLUMNS)].to_numpy(), b[list(CROP_COLUMNS)].to_numpy(),
                           rtol=1e-6, atol=CROP_TOLERANCE).all(axis=1)
    for ok, what in ((same_box, "box"), (same_crop, "crop (center and size)")):
        if not ok.all():
            box = a.index[np.flatnonzero(~ok)[0]]
            raise DataError(f"{other.index_file}: the {what} of box {box} (image "
                            f"{a.loc[box, 'image_id']}) differs from {ref.index_file}; "
                            "ensemble members need the same boxes and crop settings")


def align_members(members: Sequence[MemberInstances]) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """The ensemble's instances and, per member, the heatmap row of each instance.

    The instances are those of the first member with per-cue rows (else of the first member);
    every other per-cue member must have exactly the same (box, cue) rows, and a per-box member
    gives its box's row to each instance of that box."""
    ref = next((m for m in members if not m.per_box), members[0])
    for other in members:
        if other is not ref:
            _check_same_boxes(ref, other)
    keys = ref.index[["box_index", "cue_index"]]
    sources = []
    for m in members:
        rows = pd.Series(np.arange(len(m.index)), dtype=np.int64)
        if m.per_box:
            lookup = pd.Series(rows.to_numpy(), index=m.index["box_index"].to_numpy())
            src = lookup.reindex(keys["box_index"].to_numpy())
        else:
            lookup = pd.Series(rows.to_numpy(), index=pd.MultiIndex.from_frame(
                m.index[["box_index", "cue_index"]]))
            src = lookup.reindex(pd.MultiIndex.from_frame(keys))
            if len(m.index) != len(keys) or src.isna().any():
                raise DataError(f"{m.index_file}: its (box, cue) instances differ from those "
                                f"of {ref.index_file}; cue models of one ensemble must run "
                                "with the same cues")
        sources.append(src.to_numpy().astype(np.int64))
    return ref.index.reset_index(drop=True), sources


class AveragedHeatmaps:
    """The ensemble's heatmaps as a function of an instance slice: the weighted mean of the
    members' rows (``sources[m][i]`` is member m's row for instance i), in float32."""

    def __init__(self, members: Sequence[MemberInstances], sources: Sequence[np.ndarray],
                 weights: Sequence[float]) -> None:
        self.members, self.sources = list(members), list(sources)
        self.weights = np.asarray(weights, dtype=np.float32)
        self.total = np.float32(self.weights.sum())

    def __call__(self, sl: slice) -> np.ndarray:
        acc: np.ndarray | None = None
        for inst, src, w in zip(self.members, self.sources, self.weights, strict=True):
            part = inst.heatmaps.rows(src[sl]).astype(np.float32)
            part *= w
            if acc is None:
                acc = part
            else:
                acc += part
        if acc is None:
            raise ValueError("an ensemble needs at least one member")
        acc /= self.total
        return acc


def member_agreement(members: Sequence[MemberInstances], sources: Sequence[np.ndarray],
                     index: pd.DataFrame, decoder: str, heatmap_sigma: float,
                     sigmas: np.ndarray, chunk: int = 256) -> dict[str, float]:
    """How alike the members' poses are (their diversity, the room an average has): per pair
    of members, the mean over instances of the OKS between the two members' decoded poses of
    the instance (all joints, the box area as the OKS area; 1: the same poses)."""
    centers = index[["center_x", "center_y"]].to_numpy()
    sizes = index[["size_w", "size_h"]].to_numpy()
    area = np.maximum(index["box_w"].to_numpy() * index["box_h"].to_numpy(), 1.0)
    poses = [decode_heatmaps(lambda sl, m=m, src=src: m.heatmaps.rows(src[sl]), len(index),
                             centers, sizes, decoder, heatmap_sigma, chunk)
             for m, src in zip(members, sources, strict=True)]
    pairs = {}
    for a in range(len(members)):
        for b in range(a + 1, len(members)):
            if len(index) == 0:
                continue
            d2 = ((poses[a][..., :2] - poses[b][..., :2]) ** 2).sum(-1)  # (N, J)
            oks = keypoint_similarity(d2, area[:, None], np.asarray(sigmas)[None])
            pairs[f"{members[a].member.name}/{members[b].member.name}"] = round(
                float(oks.mean()), 4)
    return pairs


def run_ensemble(members: Sequence[Member], boxes: str, decoder: str, post: PostSettings,
                 chunk: int = 256) -> InferenceRun:
    """Average the members' heatmaps of box mode ``boxes`` per instance (weighted) and turn
    them into COCO results with the single-model code path (``decoder``, then ``post``, whose
    OKS ``sigmas``, when given, must have as many joints as every member's heatmaps),
    ``chunk`` instances at a time."""
    sigmas = post.sigmas
    start = time.perf_counter()
    loaded: list[MemberInstances] = []
    try:
        for member in members:
            loaded.append(load_member(member, boxes))
        if sigmas is not None:
            for inst in loaded:
                if inst.heatmaps.shape[1] != len(sigmas):
                    raise DataError(f"{inst.heatmaps.path}: {inst.heatmaps.shape[1]} joints, "
                                    f"but the dataset has {len(sigmas)}")
        index, sources = align_members(loaded)
        sigma = members_heatmap_sigma(members) if decoder == "dark" else 1.0
        heatmaps = AveragedHeatmaps(loaded, sources, [m.weight for m in members])
        results = heatmaps_to_results(heatmaps, index, post, decoder, sigma, chunk)
        agreement = member_agreement(loaded, sources, index, decoder, sigma,
                                     COCO_SIGMAS if sigmas is None else sigmas, chunk)
    finally:
        for inst in loaded:
            inst.heatmaps.close()
    stats = {"members": [m.name for m in members], "weights": [m.weight for m in members],
             "broadcast_per_box": [inst.member.name for inst in loaded if inst.per_box],
             "boxes": int(index["box_index"].nunique()), "instances": len(index),
             "results": len(results), "seconds": round(time.perf_counter() - start, 2),
             "agreement": (round(float(np.mean(list(agreement.values()))), 4) if agreement
                           else None), "agreement_pairs": agreement}
    return InferenceRun(index, results, stats)
