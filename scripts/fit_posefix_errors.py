"""Print the error mix of a COCO keypoint results file as a ``posefix.error_mix`` entry.

Use the predictions of the pose models (or their ensemble) on a dev split (the generator with
another seed, e.g. ``dataset.seed: 7``), never on val:

    PYTHONPATH=. python scripts/fit_posefix_errors.py --dataset DEV_DATASET --results R.json

Joints are typed as hintpose.posefix.analysis.classify_joints does (Ronchi & Perona); the
last line is the YAML mapping to paste under ``posefix:`` in params.yaml.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hintpose.cli import run
from hintpose.data.coco import load_split
from hintpose.posefix.analysis import error_mix
from hintpose.posefix.refine import read_pose_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, required=True, help="a prepared dataset (dev)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--results", type=Path, required=True, help="COCO keypoint results")
    args = ap.parse_args()
    coco = load_split(args.dataset, args.split)
    mix = error_mix(coco, read_pose_results(args.results, coco))
    print(json.dumps({k: mix[k] for k in ("matched_poses", "joints", "shares")}))
    rows = ", ".join(f"{g}: {list(v)}" for g, v in mix["by_group"].items())
    print(f"error_mix: {{{rows}}}")


if __name__ == "__main__":
    run(main)
