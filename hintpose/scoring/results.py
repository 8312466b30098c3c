"""Scores of result sets -> results rows, the report's table and AP by crowd level.

A *result set* is one list of COCO keypoint results: a pose model (or the ensemble, or the
ensemble refined by PoseFix) run on detector boxes (``det``) or GT boxes (``gt``). Its scores
become one row of ``RESULT_COLUMNS``, the machine-readable source of every table. The report's
table groups rows by method: a model's row comes from whether it takes a cue (``cue`` other
than ``none``) and is ``recurrent``, never from its name, and a method with several models
(two seeds) shows the mean and the spread of their scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hintpose.data.crowd import CROWD_LEVELS
from hintpose.scoring.evaluation import coco_keypoint_eval, crowd_level_eval
from hintpose.topdown.outputs import BOX_MODES, CUE_AWARE

BOX_LABELS = {"det": "detector boxes", "gt": "GT boxes"}
RESULT_COLUMNS = ("name", "boxes", "AP", "AP50", "AP75", "APm", "APl", "AR", "AP_easy",
                  "AP_medium", "AP_hard")
#: Result-set names of the stages after the single models (ENSEMBLE_REPORT: the ensemble of
#: the report's members and weights, next to the one of ``ensemble.members``).
ENSEMBLE, ENSEMBLE_REPORT, ENSEMBLE_POSEFIX = "ensemble", "ensemble_report", "ensemble_posefix"
ENSEMBLE_LABELS = {ENSEMBLE: "Ensemble", ENSEMBLE_REPORT: "Ensemble, the report's rule",
                   ENSEMBLE_POSEFIX: "Ensemble + PoseFix"}
#: Rows of the report's table, in its order. The cue models' rows are the report's protocol
#: (one pose per cue, scored alike); their ``CUE_AWARE_LABEL`` rows score the same heatmaps
#: cue-aware (``eval.neighbour_decay``, beyond the report).
CUE_AWARE_LABEL = ", cue-aware scoring"
TABLE_ROWS = ("HRNet baseline", "Instance cue", "Recurrent refinement", "I.C.+R.R.",
              "Instance cue" + CUE_AWARE_LABEL, "I.C.+R.R." + CUE_AWARE_LABEL,
              *ENSEMBLE_LABELS.values())
#: Columns of the report's table: result column -> heading.
TABLE_COLUMNS = {"AP": "AP", "AR": "AR", "AP50": "AP50", "AP75": "AP75", "APm": "APm",
                 "APl": "APl", "AP_hard": "hard-crowd AP"}
MISSING = "—"
#: Keys of the table rows in the headline figures (``summary``).
SUMMARY_KEYS = dict(zip(TABLE_ROWS, ("baseline", "ic", "rr", "icrr", "ic" + CUE_AWARE,
                                     "icrr" + CUE_AWARE, *ENSEMBLE_LABELS),
                        strict=True))
#: Box modes of the secondary rows in the headline figures (the table has both): detector
#: boxes only for the cue-aware rows (the protocol is about boxes holding several persons)
#: and the report's ensemble rule (a reference row); it keeps the registered figures few.
SECONDARY_SUMMARY_MODES = ("det",)


def method_of(name: str, takes_cue: bool | None = None, recurrent: bool | None = None,
              cue_aware: bool = False) -> str:
    """The table row of a result set: the ensemble stages by name, a pose model by whether it
    ``takes_cue`` and is ``recurrent`` (which must then be given) and by the protocol its
    results were scored with (``cue_aware``: cue models only)."""
    if name in ENSEMBLE_LABELS:
        return ENSEMBLE_LABELS[name]
    if takes_cue is None or recurrent is None:
        raise ValueError(f"result set {name!r} is neither an ensemble nor a known pose model")
    if cue_aware and not takes_cue:
        raise ValueError(f"result set {name!r}: cue-aware scoring needs a cue model")
    return TABLE_ROWS[int(takes_cue) + 2 * int(recurrent)] + (CUE_AWARE_LABEL
                                                                 if cue_aware else "")


def score_record(name: str, boxes: str, stats: Mapping[str, float],
                 crowd: Mapping[str, Mapping[str, float] | None]) -> dict[str, Any]:
    """The metrics of one result set (what ``metrics/scores/<name>_<boxes>.json`` holds): the
    ten COCO stats, then AP and AR per crowd level (None for a level without images)."""
    record: dict[str, Any] = {"name": name, "boxes": boxes, **{k: float(v) for k, v in
                                                              stats.items()}}
    for level in CROWD_LEVELS:
        level_stats = crowd.get(level)
        for stat in ("AP", "AR"):
            record[f"{stat}_{level}"] = None if level_stats is None else float(level_stats[stat])
    return record


def results_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per result set with exactly ``RESULT_COLUMNS`` (NaN for a missing level)."""
    frame = pd.DataFrame([{c: r.get(c) for c in RESULT_COLUMNS} for r in records],
                         columns=list(RESULT_COLUMNS))
    numeric = list(RESULT_COLUMNS[2:])
    frame[numeric] = frame[numeric].astype(float)
    return frame


def mean_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and spread (half the range, so the values lie within mean ± spread) of the
    finite ``values``; NaN for both when there are none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return math.nan, math.nan
    return float(np.mean(finite)), (max(finite) - min(finite)) / 2


def format_cell(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    """A table cell: ``mean ± spread`` for several values, the value alone for one,
    ``MISSING`` for none (in percent with ``scale`` 100)."""
    finite = [v for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return MISSING
    mean, spread = mean_spread(finite)
    if len(finite) == 1:
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {spread * scale:.{digits}f}"


def report_table(results: pd.DataFrame, methods: Mapping[str, str],
                 boxes: Sequence[str] = BOX_MODES) -> pd.DataFrame:
    """The report's table (``TABLE_ROWS`` x ``TABLE_COLUMNS``, in percent) for each box mode
    with results: columns ``boxes``, ``method``, the headings, and ``models`` (the result
    sets averaged in the row). ``methods`` maps every result-set name to its row."""
    unknown = sorted(set(results["name"]) - set(methods))
    if unknown:
        raise ValueError(f"no table row for the result sets {unknown}")
    rows = []
    for mode in boxes:
        subset = results[results["boxes"] == mode]
        if subset.empty:
            continue
        for method in TABLE_ROWS:
            members = subset[subset["name"].map(methods) == method]
            row = {"boxes": mode, "method": method}
            for column, heading in TABLE_COLUMNS.items():
                row[heading] = format_cell(members[column].tolist())
            row["models"] = ", ".join(members["name"]) or MISSING
            rows.append(row)
    columns = ["boxes", "method", *TABLE_COLUMNS.values(), "models"]
    return pd.DataFrame(rows, columns=columns)


def summary(results: pd.DataFrame, methods: Mapping[str, str],
            follow_rates: Mapping[str, float]) -> dict[str, Any]:
    """The headline figures ``dvc metrics`` shows: per table row (``SUMMARY_KEYS``) and box
    mode, AP and hard-crowd AP in percent (the mean over the row's models, as the table), and
    per method the cue probe's follow rate (the mean over the models in ``follow_rates``)."""
    ap: dict[str, dict[str, float]] = {}
    follow: dict[str, float] = {}
    for method, key in SUMMARY_KEYS.items():
        secondary = key.endswith(CUE_AWARE) or key == ENSEMBLE_REPORT
        for mode in SECONDARY_SUMMARY_MODES if secondary else BOX_MODES:
            members = results[(results["boxes"] == mode) & (results["name"].map(methods)
                                                           == method)]
            for column, suffix in (("AP", ""), ("AP_hard", "_hard")):
                values = [v for v in members[column].tolist() if math.isfinite(v)]
                if values:
                    ap.setdefault(key, {})[mode + suffix] = round(100 * float(np.mean(values)), 2)
        rates = [r for name, r in follow_rates.items() if methods.get(name) == method]
        if rates:
            follow[key] = round(float(np.mean(rates)), 4)
    return {"AP": ap, "follow_rate": follow}


def table_markdown(table: pd.DataFrame) -> str:
    """The report's table as Markdown: one section per box mode, the averaged models as a
    last column."""
    headings = ["Method", *TABLE_COLUMNS.values(), "Models"]
    align = ["---", *["---:"] * len(TABLE_COLUMNS), "---"]
    parts = ["# Results", "",
             "AP and AR in percent (COCO keypoint metric, pycocotools); `mean ± spread` over "
             "the models of a method (spread: half their range); hard-crowd AP on images with "
             "a CrowdPose crowd index of 0.8 or more. Cue models run once per instance cue in "
             "a box; their plain rows score every cue's pose alike (the report's protocol), "
             "their \"cue-aware scoring\" rows keep one primary pose per box and decay the "
             "others (MIPNet; `eval.neighbour_decay`)."]
    for mode, group in table.groupby("boxes", sort=False):
        label = BOX_LABELS.get(str(mode), str(mode))
        parts += ["", f"## {label[:1].upper()}{label[1:]}", "",
                  "| " + " | ".join(headings) + " |", "| " + " | ".join(align) + " |"]
        for _, row in group.iterrows():
            cells = [row["method"], *(row[h] for h in TABLE_COLUMNS.values()), row["models"]]
            parts.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(parts) + "\n"


def crowd_frame(results: pd.DataFrame) -> pd.DataFrame:
    """AP by crowd level in long form (columns ``name``, ``boxes``, ``crowd``, ``AP`` and a
    ``label`` "<name> <boxes> <crowd>" for a bar chart), levels without images left out."""
    rows = []
    for _, r in results.iterrows():
        for level in CROWD_LEVELS:
            ap = r[f"AP_{level}"]
            if math.isfinite(ap):
                rows.append({"label": f"{r['name']} {r['boxes']} {level}", "name": r["name"],
                             "boxes": r["boxes"], "crowd": level, "AP": round(float(ap), 4)})
    return pd.DataFrame(rows, columns=["label", "name", "boxes", "crowd", "AP"])


def plot_ap_by_crowd(results: pd.DataFrame, path: str | Path) -> None:
    """A PNG of AP by crowd level: one panel per box mode, a group of bars per level with
    one bar per result set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in BOX_MODES if (results["boxes"] == m).any()] or list(BOX_MODES[:1])
    levels = list(CROWD_LEVELS)
    fig, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 3.8), squeeze=False,
                             sharey=True)
    for ax, mode in zip(axes[0], modes, strict=True):
        subset = results[results["boxes"] == mode].reset_index(drop=True)
        width = 0.8 / max(len(subset), 1)
        for i, r in subset.iterrows():
            values = [r[f"AP_{level}"] * 100 for level in levels]
            xs = np.arange(len(levels)) - 0.4 + width * (i + 0.5)
            ax.bar(xs, np.nan_to_num(values), width, label=r["name"])
        ax.set_xticks(np.arange(len(levels)), levels)
        ax.set_title(f"AP by crowd level, {BOX_LABELS.get(mode, mode)}")
        ax.set_xlabel("crowd level (CrowdPose crowd index)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("AP (%)")
    axes[0][-1].legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def score_results(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], name: str,
                  boxes: str, source: str = "results") -> dict[str, Any]:
    """Score one result set (read from ``source``, which errors name) against the GT (a COCO
    keypoint dict): ``score_record`` of its COCO stats and crowd-level AP/AR."""
    gt_dict, dets = dict(gt), list(results)
    return score_record(name, boxes, coco_keypoint_eval(gt_dict, dets, source=source),
                        crowd_level_eval(gt_dict, dets, source))
