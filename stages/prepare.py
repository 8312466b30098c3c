"""Stage prepare: the dataset (synthetic or imported COCO), its digest (the md5 of each of its
files, which the stages that read the dataset depend on), statistics and a contact sheet."""

import argparse
import json
from pathlib import Path

import cv2

from hintpose.cli import run
from hintpose.config import load_params
from hintpose.data.prepare import dataset_digest, dataset_stats, prepare_dataset
from hintpose.io import write_json
from hintpose.report.visualize import dataset_sheet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", type=Path, default=Path("data/dataset"))
    ap.add_argument("--digest", type=Path, default=Path("data/dataset_digest.json"),
                    help="md5 of every dataset file: what the stages reading it depend on")
    ap.add_argument("--details", type=Path, default=Path("metrics/details/dataset.json"),
                    help="statistics of each split")
    ap.add_argument("--sheet", type=Path, default=Path("metrics/plots/dataset_samples.png"))
    args = ap.parse_args()
    params = load_params(args.params).dataset
    splits = prepare_dataset(args.out, params)
    write_json(args.digest, dataset_digest(args.out), indent=1)
    stats = {split: dataset_stats(coco) for split, coco in splits.items()}
    write_json(args.details, stats)
    val = splits["val"]
    by_crowd = sorted(val.images, key=lambda i: -val.images[i].get("crowdIndex", 0.0))
    picks = by_crowd[:4] + by_crowd[len(by_crowd) // 2:][:: max(1, len(by_crowd) // 8)][:4]
    args.sheet.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.sheet), dataset_sheet(val, list(dict.fromkeys(picks))))
    print(json.dumps(stats["val"], indent=None, default=float))


if __name__ == "__main__":
    run(main)
