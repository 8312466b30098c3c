"""Stages ensemble, ensemble_report: average the members' heatmaps per (box, cue) instance.

The members are ``ensemble.members`` with ``ensemble.weights``, or with ``--report-rule`` the
report's: every model of ``models`` with a cue input or recurrent refinement, equal weights
(hintpose.ensemble.report_rule_members; the ensemble_report stage, its labelled row).

Reads ``<infer>/<member>/`` (written by infer@<member>) for both box modes and writes, in the
layout of an infer output (so ``score --results ensemble=<out>`` scores it),
``instances_<mode>.csv`` (the instances averaged) and ``results_<mode>.json`` (COCO keypoint
results after decoding, rescoring and OKS-NMS with the ``eval`` settings, the single-model
code path), plus ``ensemble.json`` with the members and settings, and ``--details`` (the
counts of each box mode). Everything goes to
``<out>.partial`` first and replaces ``<out>`` only when complete.
"""

import argparse
import dataclasses
from pathlib import Path

from hintpose.cli import run
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.ensemble import report_rule_members, resolve_members, run_ensemble
from hintpose.io import output_dir, write_csv, write_json
from hintpose.topdown.outputs import BOX_MODES, inference_files
from hintpose.topdown.postprocess import PostSettings

#: The ``eval`` settings the ensemble uses (its declared params; neighbour_decay is fixed at 1,
#: the report's protocol), recorded in ``ensemble.json``.
EVAL_KEYS = ("in_vis_thr", "nms_thr", "soft_nms", "decoder", "neighbour_decay")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--infer", type=Path, default=Path("data/infer"),
                    help="parent folder of the infer@<model> outputs")
    ap.add_argument("--out", type=Path, default=Path("data/ensemble"))
    ap.add_argument("--details", type=Path, default=Path("metrics/details/ensemble.json"))
    ap.add_argument("--report-rule", action="store_true",
                    help="the report's members and weights instead of ensemble.members")
    args = ap.parse_args()
    params = load_params(args.params)
    members = (report_rule_members(params.models, args.infer) if args.report_rule else
               resolve_members(params.ensemble, params.models, args.infer))
    val = load_split(args.dataset, "val")

    metrics, runs = {}, {}
    # The report's protocol (every cue's pose scored alike), as the rows it feeds (PoseFix).
    report_protocol = dataclasses.replace(params.eval, neighbour_decay=1.0)
    post = PostSettings.of(report_protocol, val)
    with output_dir(args.out) as tmp:  # replaces args.out when complete; removed on failure
        for mode in BOX_MODES:
            out = run_ensemble(members, mode, report_protocol.decoder, post,
                               params.ensemble.chunk)
            files = inference_files(tmp, mode)
            write_csv(files["index"], out.index)
            write_json(files["results"], out.results, indent=None)
            runs[mode] = out.stats
            metrics[mode] = {k: len(v) if isinstance(v, list) else v
                             for k, v in out.stats.items()
                             if k != "weights"}  # numbers only: `dvc metrics` lists them
            print(f"ensemble ({mode}): {len(members)} members, {out.stats['instances']} "
                  f"instances from {out.stats['boxes']} boxes, {out.stats['results']} poses "
                  f"after OKS-NMS in {out.stats['seconds']} s; members' mutual OKS "
                  f"{out.stats['agreement']}")
        settings = {"members": {m.name: {"folder": str(m.folder), "weight": m.weight}
                                for m in members},
                    "rule": "report" if args.report_rule else "ensemble.members",
                    "ensemble": ({"chunk": params.ensemble.chunk} if args.report_rule
                                 else dataclasses.asdict(params.ensemble)),
                    "eval": {k: getattr(report_protocol, k) for k in EVAL_KEYS},
                    "runs": runs}
        write_json(tmp / "ensemble.json", settings)
    write_json(args.details, metrics)

if __name__ == "__main__":
    run(main)
