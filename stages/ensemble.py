"""Stage ensemble: average the heatmaps of the ``ensemble.members`` per (box, cue) instance.

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
from hintpose.ensemble import resolve_members, run_ensemble
from hintpose.io import finish_dir, start_dir, write_json
from hintpose.topdown.outputs import BOX_MODES, inference_files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--infer", type=Path, default=Path("data/infer"),
                    help="parent folder of the infer@<model> outputs")
    ap.add_argument("--out", type=Path, default=Path("data/ensemble"))
    ap.add_argument("--details", type=Path, default=Path("metrics/details/ensemble.json"))
    args = ap.parse_args()
    params = load_params(args.params)
    members = resolve_members(params.ensemble, params.models, args.infer)
    val = load_split(args.dataset, "val")

    tmp = start_dir(args.out)
    metrics, runs = {}, {}
    # The report's protocol (every cue's pose scored alike), as the rows it feeds (PoseFix).
    report_protocol = dataclasses.replace(params.eval, neighbour_decay=1.0)
    for mode in BOX_MODES:
        out = run_ensemble(members, mode, report_protocol, val.category["id"],
                           params.ensemble.chunk, val.sigmas)
        files = inference_files(tmp, mode)
        out.index.to_csv(files["index"], index=False)
        write_json(files["results"], out.results, indent=None)
        runs[mode] = out.stats
        metrics[mode] = {k: len(v) if isinstance(v, list) else v for k, v in out.stats.items()
                         if k != "weights"}  # numbers only: `dvc metrics` lists them
        print(f"ensemble ({mode}): {len(members)} members, {out.stats['instances']} instances "
              f"from {out.stats['boxes']} boxes, {out.stats['results']} poses after OKS-NMS in "
              f"{out.stats['seconds']} s")
    settings = {"members": {m.name: {"folder": str(m.folder), "weight": m.weight}
                            for m in members},
                "ensemble": dataclasses.asdict(params.ensemble),
                "eval": dataclasses.asdict(report_protocol), "runs": runs}
    write_json(tmp / "ensemble.json", settings)
    finish_dir(args.out)
    write_json(args.details, metrics)


if __name__ == "__main__":
    run(main)
