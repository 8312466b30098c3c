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
from hintpose.io import (
    finish_dir,
    read_json,
    start_dir,
    write_atomic,
    write_json,
    write_text_atomic,
)
from hintpose.scoring.result_sets import result_sets
from hintpose.scoring.results import (
    crowd_frame,
    method_of,
    plot_ap_by_crowd,
    report_table,
    results_frame,
    score_results,
    summary,
    table_markdown,
)
from hintpose.topdown.outputs import CUE_AWARE


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
    methods = {name: method_of(name, m.cue != "none", m.recurrent)
               for name, m in params.models.items()}
    methods.update({name + CUE_AWARE: method_of(name, m.cue != "none", m.recurrent, True)
                    for name, m in params.models.items() if m.cue != "none"})
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
