"""Stage cues: instance cues for every detection box, from MultiPoseNet peaks and from GT.

Writes ``<out>/val.json`` (the cues of ``cues.source``), ``<out>/oracle.json`` (the GT cues,
always, so both can be evaluated), ``--details`` (the quality of both sources) and
``--metrics`` (the headline: multi-person cue recall of each source). Both cue files are
aligned one to one with the detections; each file is replaced atomically.
"""

import argparse
import json
import time
from pathlib import Path

from hintpose.bottomup.cues import (
    cue_quality,
    cue_records,
    load_model,
    multiposenet_cues,
    oracle_cues,
)
from hintpose.cli import run
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.io import write_json
from hintpose.runtime import from_params
from hintpose.topdown.boxes import read_boxes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--detections", type=Path, default=Path("data/detections/val.json"))
    ap.add_argument("--model-dir", type=Path, default=Path("data/multiposenet"))
    ap.add_argument("--out", type=Path, default=Path("data/cues"), help="folder of the cue files")
    ap.add_argument("--metrics", type=Path, required=True, help="headline cue recall")
    ap.add_argument("--details", type=Path, required=True, help="every cue-quality figure")
    args = ap.parse_args()
    all_params = load_params(args.params)
    params, rp = all_params.cues, all_params.runtime
    coco = load_split(args.dataset, "val")
    boxes = read_boxes(args.detections, coco)
    rt = from_params(rp)
    net, config = load_model(args.model_dir, rt.device)
    start = time.perf_counter()
    found = multiposenet_cues(net, config, coco, boxes, params, rt)
    seconds = time.perf_counter() - start
    oracle = oracle_cues(coco, boxes, params.max_per_box)
    sources = {"multiposenet": found, "gt": oracle}
    details = {"source": params.source, "multiposenet_seconds": round(seconds, 2),
               **{name: cue_quality(coco, boxes, cues) for name, cues in sources.items()}}
    write_json(args.out / "val.json", cue_records(boxes, sources[params.source]), indent=None)
    write_json(args.out / "oracle.json", cue_records(boxes, oracle), indent=None)
    write_json(args.details, details)
    write_json(args.metrics, {"cue_recall": {name: details[name]["multi_person_recall"]
                                             for name in sources}})
    print(json.dumps(details))


if __name__ == "__main__":
    run(main)
