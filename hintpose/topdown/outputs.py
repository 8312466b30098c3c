"""The layout of an infer@<model> output folder (also the ensemble's): per box mode the
heatmaps, the instance index and the COCO results. Imports no torch, so scoring needs none."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hintpose.errors import DataError

#: Box modes: detector boxes (the detect stage's) and the GT boxes HRNet evaluates with.
BOX_MODES = ("det", "gt")
#: Suffix of a cue model's results under cue-aware scoring (its result set's name too).
CUE_AWARE = "_cueaware"

#: Columns of an instance index: the source box (its position in the box list, clipped box,
#: score), the cue (its position in the box's cue list and the point; -1 and NaN when the
#: model takes no cue or the box had none, so the crop center served as cue) and the crop.
INDEX_COLUMNS = ("image_id", "box_index", "cue_index", "box_x", "box_y", "box_w", "box_h",
                 "box_score", "cue_x", "cue_y", "center_x", "center_y", "size_w", "size_h")


def inference_files(folder: str | Path, boxes: str) -> dict[str, Path]:
    """Where an ``infer`` output folder keeps the heatmaps (.npy, float16 (N, J, h, w)), the
    instance index (.csv, INDEX_COLUMNS, row i = heatmap i) and the COCO results of a box
    mode (``det`` or ``gt``): under the report's protocol, and (``cue_aware``, cue models with
    ``eval.neighbour_decay`` < 1) under cue-aware scoring."""
    folder = Path(folder)
    return {"heatmaps": folder / f"heatmaps_{boxes}.npy",
            "index": folder / f"instances_{boxes}.csv",
            "results": folder / f"results_{boxes}.json",
            "cue_aware": folder / f"results_{boxes}{CUE_AWARE}.json"}


def read_instance_index(path: str | Path) -> pd.DataFrame:
    """Read an instance index written by the ``infer`` stage; other columns are a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: instance index not found (run the infer stage)")
    frame = pd.read_csv(path)
    if tuple(frame.columns) != INDEX_COLUMNS:
        raise DataError(f"{path}: expected the columns {', '.join(INDEX_COLUMNS)}, got "
                        f"{', '.join(map(str, frame.columns))}")
    return frame


@dataclass
class InferenceRun:
    """What one model on one box list produced (the heatmaps are in the given file)."""

    index: pd.DataFrame
    results: list[dict[str, Any]]
    stats: dict[str, float]
    #: Results of the earlier hops of a recurrent model (hop 1 first), when asked for.
    hop_results: list[list[dict[str, Any]]] = field(default_factory=list)
    #: A cue model's results under cue-aware scoring (``eval.neighbour_decay`` < 1; the
    #: ``results`` are the report's protocol), else None.
    cue_aware_results: list[dict[str, Any]] | None = None
