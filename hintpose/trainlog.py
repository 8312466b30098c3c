"""Per-epoch training logs through dvclive, DVC's own logger: ``dvc plots`` and ``dvc exp show``
read its folders natively (``<folder>/metrics.json``: the latest value of each figure;
``<folder>/plots/metrics/<name>.tsv``: one curve per figure, ``step`` = epoch).

A log is written once the run is complete (from the rows the engine kept, resumed epochs
included) into a fresh folder, straight where DVC expects it: dvclive itself git-adds the
files of its folder inside ``dvc exp run``, so a temporary folder renamed afterwards would
leave stale entries in the experiment's commit. Non-finite values (a NaN validation loss when
there is no val set) are left out. Each log costs dvclive's import and its DVC repository
lookup (timed in docs/sizing.md, "Timings of the tooling").
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from hintpose.errors import DataError

#: Columns that are bookkeeping, not curves.
NOT_LOGGED = ("epoch",)


def write_log(folder: str | Path, rows: Sequence[dict[str, float]]) -> None:
    """Log ``rows`` (one dict per epoch, with an ``epoch`` column) into the dvclive folder
    ``folder``, replacing it."""
    from dvclive import Live

    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    with Live(str(folder), resume=False, report=None, save_dvc_exp=False, dvcyaml=None,
              monitor_system=False) as live:
        for row in rows:
            live.step = int(row["epoch"])
            for key, value in row.items():
                if key not in NOT_LOGGED and math.isfinite(float(value)):
                    live.log_metric(key, float(value), timestamp=False)
    (folder / "plots" / "metrics").mkdir(parents=True, exist_ok=True)  # a run without epochs
    if not (folder / "metrics.json").is_file():  # (given weights) logs nothing, yet DVC
        (folder / "metrics.json").write_text("{}\n")  # expects the files it declares


def read_log(folder: str | Path, name: str = "training") -> pd.DataFrame:
    """A dvclive folder as one table: ``epoch`` and one column per logged figure (NaN where an
    epoch did not log it; no rows for a run without epochs); a missing folder is a DataError
    naming it."""
    if not Path(folder).is_dir():
        raise DataError(f"{folder}: {name} not found (a dvclive folder)")
    curves = sorted((Path(folder) / "plots" / "metrics").glob("*.tsv"))
    frame = pd.DataFrame({"epoch": pd.Series(dtype="int64")})
    for tsv in curves:
        curve = pd.read_csv(tsv, sep="\t", float_precision="round_trip")[["step", tsv.stem]]
        curve = curve.rename(columns={"step": "epoch"})
        frame = frame.merge(curve, on="epoch", how="outer")
    return frame.sort_values("epoch", ignore_index=True)
