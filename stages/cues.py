"""Stage cues: instance cues for every detection box, from MultiPoseNet peaks and from GT.

Writes ``<out>/val.json`` (the cues of ``cues.source``), ``<out>/oracle.json`` (the GT cues,
always, so both can be evaluated) and ``metrics/cues.json`` (the quality of both sources).
Both cue files are aligned one to one with the detections; each file is replaced atomically.
"""

import argparse
import json
import time
from pathlib import Path

from hintpose.bottomup import load_model, write_json
from hintpose.cli import run
from hintpose.config import load_params
from hintpose.cues import cue_quality, cue_records, multiposenet_cues, oracle_cues
from hintpose.data.coco import load_split
from hintpose.inference import read_boxes
from hintpose.training import bf16_supported, resolve_device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--detections", type=Path, default=Path("data/detections/val.json"))
    ap.add_argument("--model-dir", type=Path, default=Path("data/multiposenet"))
    ap.add_argument("--out", type=Path, default=Path("data/cues"), help="folder of the cue files")
    ap.add_argument("--metrics", type=Path, required=True)
    args = ap.parse_args()
    all_params = load_params(args.params)
    params, mpn = all_params.cues, all_params.multiposenet
    coco = load_split(args.dataset, "val")
    boxes = read_boxes(args.detections, coco)
    device = resolve_device(mpn.device, key="multiposenet.device")
    net, config = load_model(args.model_dir, device)
    start = time.perf_counter()
    found = multiposenet_cues(net, config, coco, boxes, params, device,
                              mpn.train.bf16 and bf16_supported(device), mpn.train.channels_last,
                              threads=mpn.train.threads)
    seconds = time.perf_counter() - start
    oracle = oracle_cues(coco, boxes, params.max_per_box)
    sources = {"multiposenet": found, "gt": oracle}
    metrics = {"source": params.source, "multiposenet_seconds": round(seconds, 2),
               **{name: cue_quality(coco, boxes, cues) for name, cues in sources.items()}}
    write_json(args.out / "val.json", cue_records(boxes, sources[params.source]), indent=None)
    write_json(args.out / "oracle.json", cue_records(boxes, oracle), indent=None)
    write_json(args.metrics, metrics)
    print(json.dumps(metrics))


if __name__ == "__main__":
    run(main)
