"""Stage score: COCO keypoint AP of every result set, overall and by crowd level, and the table.

Result sets: each model of ``models`` in the params file (``<infer>/<model>/results_det.json``
and ``results_gt.json``, written by infer@<model>; a cue model's ``results_*_cueaware.json``
too, as ``<model>_cueaware``, the rows "..., cue-aware scoring") plus any
``--results NAME=DIR`` (``ensemble``,
``ensemble_posefix``: a folder with ``results_det.json`` and/or ``results_gt.json``) or
``--results NAME:BOXES=FILE`` (one results file, BOXES ``det`` or ``gt``). Writes
the headline figures ``--summary`` (AP and hard-crowd AP per method and box mode, the cue
probe's follow rate per method, read from each model's ``<infer>/<model>/infer.json``), one
JSON of every score per result set (``<scores>/<name>_<boxes>.json``), the results CSV (one
row per result set), the report's table as Markdown and CSV, and AP by crowd level as CSV
and PNG.
Every result set is scored before anything is written; files are replaced atomically.
"""

import argparse
from pathlib import Path

from tqdm import tqdm

from hintpose.cli import run
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.errors import ConfigError, DataError
from hintpose.io import (
    finish_dir,
    read_json,
    start_dir,
    write_atomic,
    write_json,
    write_text_atomic,
)
from hintpose.scoring.results import (
    ENSEMBLE,
    ENSEMBLE_POSEFIX,
    crowd_frame,
    method_of,
    plot_ap_by_crowd,
    report_table,
    results_frame,
    score_results,
    summary,
    table_markdown,
)
from hintpose.topdown.outputs import BOX_MODES, CUE_AWARE, inference_files


def result_sets(infer_dir: Path, models: list[str],
                extras: list[str]) -> list[tuple[str, str, Path]]:
    """(name, boxes, results file) of every result set to score; a missing one is an error."""
    sets = []
    for model in models:
        folder = infer_dir / model
        if not folder.is_dir():
            raise DataError(f"{folder}: inference output of model {model!r} not found (run "
                            f"infer@{model})")
        for boxes in BOX_MODES:
            path = inference_files(folder, boxes)["results"]
            if not path.is_file():
                raise DataError(f"{path}: results of model {model!r} with {boxes} boxes not "
                                f"found (run infer@{model})")
            sets.append((model, boxes, path))
            cue_aware = inference_files(folder, boxes)["cue_aware"]
            if cue_aware.is_file():  # a cue model's results under cue-aware scoring
                sets.append((model + CUE_AWARE, boxes, cue_aware))
    for spec in extras:
        target, sep, path_name = spec.partition("=")
        name, _, boxes = target.partition(":")
        if not sep or name not in (ENSEMBLE, ENSEMBLE_POSEFIX) or boxes not in ("", *BOX_MODES):
            raise ConfigError(f"--results {spec!r}: expected NAME=DIR or NAME:BOXES=FILE with "
                              f"NAME {ENSEMBLE} or {ENSEMBLE_POSEFIX} and BOXES det or gt")
        if boxes:
            if not Path(path_name).is_file():
                raise DataError(f"{path_name}: results of {name} with {boxes} boxes not found")
            sets.append((name, boxes, Path(path_name)))
            continue
        folder = Path(path_name)
        found = [(name, b, inference_files(folder, b)["results"]) for b in BOX_MODES]
        found = [s for s in found if s[2].is_file()]
        if not found:
            raise DataError(f"{folder}: no results_det.json or results_gt.json for {name}")
        sets += found
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--infer", type=Path, default=Path("data/infer"),
                    help="parent folder of the infer@<model> outputs")
    ap.add_argument("--results", action="append", default=[], metavar="NAME=DIR",
                    help="more result sets: ensemble=DIR, ensemble_posefix:det=FILE, ...")
    ap.add_argument("--summary", type=Path, default=Path("metrics/summary.json"),
                    help="the headline figures (dvc metrics)")
    ap.add_argument("--scores", type=Path, default=Path("metrics/details/scores"),
                    help="folder of one JSON of every score per result set")
    ap.add_argument("--csv", type=Path, default=Path("metrics/results.csv"))
    ap.add_argument("--table", type=Path, default=Path("metrics/results_table"),
                    help="the report's table, written as <table>.md and <table>.csv")
    ap.add_argument("--crowd-plot", type=Path, default=Path("metrics/plots/ap_by_crowd"),
                    help="AP by crowd level, written as <crowd-plot>.csv and .png")
    args = ap.parse_args()
    params = load_params(args.params)
    gt = load_split(args.dataset, "val").data
    sets = result_sets(args.infer, list(params.models), args.results)
    methods = {name: method_of(name, m.instance_cue, m.recurrent)
               for name, m in params.models.items()}
    methods.update({name + CUE_AWARE: method_of(name, m.instance_cue, m.recurrent, True)
                    for name, m in params.models.items() if m.instance_cue})
    methods.update({name: method_of(name) for name, _, _ in sets if name not in methods})
    records = []
    for name, boxes, path in tqdm(sets, desc="score", unit="result set"):
        records.append(score_results(gt, read_json(path, "results file"), name, boxes,
                                     str(path)))
    results = results_frame(records)
    table = report_table(results, methods)
    probes = {m: read_json(args.infer / m / "infer.json", f"inference record of {m}")
              for m in params.models}
    follow = {m: float(r["cue_probe"]["follow_rate"]) for m, r in probes.items()
              if r.get("cue_probe", {}).get("pairs")}
    headline = summary(results, methods, follow)

    tmp = start_dir(args.scores)
    for rec in records:  # the name and box mode are in the file name: numbers only
        numbers = {k: v for k, v in rec.items() if k not in ("name", "boxes")}
        write_json(tmp / f"{rec['name']}_{rec['boxes']}.json", numbers)
    finish_dir(args.scores)
    write_json(args.summary, headline)
    write_text_atomic(args.csv, results.to_csv(index=False, float_format="%.6g"))
    write_text_atomic(args.table.with_suffix(".csv"), table.to_csv(index=False))
    write_text_atomic(args.table.with_suffix(".md"), table_markdown(table))
    write_text_atomic(args.crowd_plot.with_suffix(".csv"),
                      crowd_frame(results).to_csv(index=False))
    write_atomic(args.crowd_plot.with_suffix(".png"), lambda p: plot_ap_by_crowd(results, p))
    print(table_markdown(table))


if __name__ == "__main__":
    run(main)
