"""Stage ensemble: average the heatmaps of the ``ensemble.members`` per (box, cue) instance.

Reads ``<infer>/<member>/`` (written by infer@<member>) for both box modes and writes, in the
layout of an infer output (so ``score --results ensemble=<out>`` scores it),
``instances_<mode>.csv`` (the instances averaged) and ``results_<mode>.json`` (COCO keypoint
results after decoding, rescoring and OKS-NMS with the ``eval`` settings, the single-model
code path), plus ``ensemble.json`` with the members and settings. Everything goes to
``<out>.partial`` first and replaces ``<out>`` only when complete.
"""

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

from hintpose.cli import run, write_text_atomic
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.ensemble import resolve_members, run_ensemble
from hintpose.inference import inference_files
from hintpose.results import BOX_MODES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--infer", type=Path, default=Path("data/infer"),
                    help="parent folder of the infer@<model> outputs")
    ap.add_argument("--out", type=Path, default=Path("data/ensemble"))
    ap.add_argument("--metrics", type=Path, default=Path("metrics/ensemble.json"))
    args = ap.parse_args()
    params = load_params(args.params)
    members = resolve_members(params.ensemble, params.models, args.infer)
    category_id = load_split(args.dataset, "val").category["id"]

    tmp = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    metrics, runs = {}, {}
    for mode in BOX_MODES:
        out = run_ensemble(members, mode, params.eval, category_id, params.ensemble.chunk)
        files = inference_files(tmp, mode)
        out.index.to_csv(files["index"], index=False)
        files["results"].write_text(json.dumps(out.results) + "\n")
        runs[mode] = out.stats
        metrics[mode] = {k: len(v) if isinstance(v, list) else v for k, v in out.stats.items()
                         if k != "weights"}  # numbers only: `dvc metrics` lists them
        print(f"ensemble ({mode}): {len(members)} members, {out.stats['instances']} instances "
              f"from {out.stats['boxes']} boxes, {out.stats['results']} poses after OKS-NMS in "
              f"{out.stats['seconds']} s")
    settings = {"members": {m.name: {"folder": str(m.folder), "weight": m.weight}
                            for m in members},
                "ensemble": dataclasses.asdict(params.ensemble),
                "eval": dataclasses.asdict(params.eval), "runs": runs}
    (tmp / "ensemble.json").write_text(json.dumps(settings, indent=2) + "\n")
    shutil.rmtree(args.out, ignore_errors=True)
    tmp.rename(args.out)
    write_text_atomic(args.metrics, json.dumps(metrics, indent=2) + "\n")


if __name__ == "__main__":
    run(main)
