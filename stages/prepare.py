"""Stage prepare: the dataset (synthetic or imported COCO), its digest (the md5 of each of its
files, which the stages that read the dataset depend on), statistics and a contact sheet."""

import argparse
import json
import shutil
from pathlib import Path

import cv2

from hintpose.cli import run
from hintpose.config import load_params
from hintpose.data.prepare import build_dataset, dataset_digest, dataset_stats
from hintpose.errors import DataError
from hintpose.io import finish_dir, partial_dir, write_atomic, write_json
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
    # Everything is made first (the dataset in a partial folder); the earlier outputs are
    # replaced only once all of it exists, so a failure anywhere leaves them as they were.
    splits = build_dataset(args.out, params)
    try:
        digest = dataset_digest(partial_dir(args.out))
        stats = {split: dataset_stats(coco) for split, coco in splits.items()}
        val = splits["val"]
        by_crowd = sorted(val.images, key=lambda i: -val.images[i].get("crowdIndex", 0.0))
        picks = by_crowd[:4] + by_crowd[len(by_crowd) // 2:][:: max(1, len(by_crowd) // 8)][:4]
        ok, sheet = cv2.imencode(".png", dataset_sheet(val, list(dict.fromkeys(picks))))
        if not ok:
            raise DataError(f"{args.sheet}: the contact sheet does not encode as PNG")
    except BaseException:
        shutil.rmtree(partial_dir(args.out), ignore_errors=True)
        raise
    finish_dir(args.out)
    write_json(args.digest, digest, indent=1)
    write_json(args.details, stats)
    write_atomic(args.sheet, lambda p: p.write_bytes(sheet.tobytes()))
    print(json.dumps(stats["val"], indent=None, default=float))


if __name__ == "__main__":
    run(main)
