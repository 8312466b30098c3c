"""Which result sets the score stage scores: every model's results files, found in its infer
output folder, plus the later stages' ones given as ``NAME=DIR`` or ``NAME:BOXES=FILE``.

A result set is (name, box mode, results file). A model's folder holds ``results_det.json`` and
``results_gt.json`` (and a cue model's ``results_*_cueaware.json``, the result set
``<model>_cueaware``); ``NAME=DIR`` takes whichever of the two box modes a folder holds,
``NAME:BOXES=FILE`` one file. Imports no torch, so scoring needs none.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from hintpose.errors import ConfigError, DataError
from hintpose.scoring.results import ENSEMBLE_LABELS
from hintpose.topdown.outputs import BOX_MODES, CUE_AWARE, inference_files

#: One result set: its name (a model, ``<model>_cueaware``, ensemble, ensemble_posefix), its
#: box mode (``det`` or ``gt``) and its COCO keypoint results file.
ResultSet = tuple[str, str, Path]


def model_result_sets(infer_dir: str | Path, models: Iterable[str]) -> list[ResultSet]:
    """The result sets of each model's ``<infer_dir>/<model>`` folder: both box modes, plus
    the cue-aware ones where present. A missing folder or results file is a DataError."""
    sets = []
    for model in models:
        folder = Path(infer_dir) / model
        if not folder.is_dir():
            raise DataError(f"{folder}: inference output of model {model!r} not found (run "
                            f"infer@{model})")
        for boxes in BOX_MODES:
            files = inference_files(folder, boxes)
            if not files["results"].is_file():
                raise DataError(f"{files['results']}: results of model {model!r} with {boxes} "
                                f"boxes not found (run infer@{model})")
            sets.append((model, boxes, files["results"]))
            if files["cue_aware"].is_file():  # a cue model's results under cue-aware scoring
                sets.append((model + CUE_AWARE, boxes, files["cue_aware"]))
    return sets


def parse_result_set(spec: str) -> list[ResultSet]:
    """The result sets of one ``--results`` spec: ``NAME=DIR`` (a folder with
    ``results_det.json`` and/or ``results_gt.json``) or ``NAME:BOXES=FILE`` (BOXES ``det`` or
    ``gt``), NAME ensemble, ensemble_report or ensemble_posefix. Bad syntax is a
    ConfigError, a missing file or a folder with neither file a DataError."""
    target, sep, path_name = spec.partition("=")
    name, _, boxes = target.partition(":")
    if not sep or name not in ENSEMBLE_LABELS or boxes not in ("", *BOX_MODES):
        raise ConfigError(f"--results {spec!r}: expected NAME=DIR or NAME:BOXES=FILE with "
                          f"NAME one of {', '.join(ENSEMBLE_LABELS)} and BOXES det or gt")
    if boxes:
        if not Path(path_name).is_file():
            raise DataError(f"{path_name}: results of {name} with {boxes} boxes not found")
        return [(name, boxes, Path(path_name))]
    folder = Path(path_name)
    found = [(name, b, inference_files(folder, b)["results"]) for b in BOX_MODES]
    found = [s for s in found if s[2].is_file()]
    if not found:
        raise DataError(f"{folder}: no results_det.json or results_gt.json for {name}")
    return found


def result_sets(infer_dir: str | Path, models: Iterable[str],
                extras: Iterable[str]) -> list[ResultSet]:
    """Every result set to score: the models' (in order), then each ``--results`` spec's; a
    missing one is an error, raised before anything is scored."""
    sets = model_result_sets(infer_dir, models)
    for spec in extras:
        sets += parse_result_set(spec)
    return sets
