"""Stage infer@<model>: run one trained pose model on the val split, on detector and GT boxes.

For each box mode (``det``: the detections file; ``gt``: the GT persons HRNet evaluates with)
the output folder gets heatmaps (flip-tested with ``eval.flip_test``) as one float16 array
(``heatmaps_<mode>.npy``), the instance index (``instances_<mode>.csv``, row i = heatmap i) and
COCO keypoint results after decoding, rescoring and OKS-NMS (``results_<mode>.json``, the
report's protocol: every cue's pose scored alike; a cue model with ``eval.neighbour_decay`` < 1
also writes ``results_<mode>_cueaware.json``, MIPNet's cue-aware scoring); ``infer.json``
records the model, the settings and the counts, the cue probe (hintpose.topdown.cue_probe:
does the model estimate the person its cue marks?) and, for a recurrent model, the AP of
every hop (``hop_AP``, hop 1 first, per box mode); the ``--details`` JSON holds the counts
(hintpose.topdown.infer_folder). Cue models run once per (box, cue) with cues from ``--cues``
(a list aligned with the detections); GT boxes take the cue points of their image that lie
inside them; a box without a cue uses its center (counted). Everything is written to
``<out>.partial`` first and replaces ``<out>`` only when complete. With ``runtime.procs`` > 1
the stage checks its params and model folder, then reruns itself as that many processes
(hintpose.launch) that split the boxes between them; rank 0 decodes and writes.
"""

import argparse
import sys
from pathlib import Path

from hintpose.cli import run
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.errors import DataError
from hintpose.launch import in_process_group, launch_local, threads_per_process
from hintpose.models.folder import MODEL_CONFIG, read_config
from hintpose.topdown.spec import ModelSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model-dir", type=Path, required=True, help="output of train@<model>")
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--detections", type=Path, required=True,
                    help="COCO results JSON of person boxes on the val split")
    ap.add_argument("--cues", type=Path, default=None,
                    help="instance cues, a JSON list aligned with the detections")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--details", type=Path, required=True,
                    help="JSON of instance counts, timings and the cue probe")
    args = ap.parse_args()
    params = load_params(args.params)
    if not args.model_dir.is_dir():
        raise DataError(f"{args.model_dir}: model folder not found (run the train stage)")
    val = load_split(args.dataset, "val")
    spec = ModelSpec.from_json(read_config(args.model_dir, "pose model", "train"),
                               args.model_dir / MODEL_CONFIG)
    val.check_keypoints(list(spec.keypoint_names), args.model_dir)
    rp = params.runtime
    if rp.procs > 1 and not in_process_group():
        sys.exit(launch_local(rp.procs, threads_per_process(rp.procs, rp.threads)))

    # Imported only now: a parent that relaunches itself never loads torch.
    from hintpose.io import finish_dir, partial_dir, start_dir, write_json
    from hintpose.runtime import distributed_session, from_params
    from hintpose.topdown.boxes import cues_inside, gt_boxes, read_boxes, read_cues, with_cues
    from hintpose.topdown.infer_folder import infer_model
    from hintpose.topdown.inference import load_pose_model

    with distributed_session(rp.device) as info:
        detections = read_boxes(args.detections, val)
        gt = gt_boxes(val)
        if args.cues is not None:
            detections = with_cues(detections, read_cues(args.cues, detections,
                                                         str(args.detections)))
            gt = with_cues(gt, cues_inside(gt, detections))
        rt = from_params(rp, info.local_rank, announce=info.is_main)
        net, spec = load_pose_model(args.model_dir, rt.device)
        net.to(memory_format=rt.memory_format)
        # Every rank predicts a share of the heatmaps into tmp; rank 0 writes the rest.
        tmp = start_dir(args.out) if info.is_main else partial_dir(args.out)
        box_sets = (("det", detections, str(args.detections)),
                    ("gt", gt, f"GT boxes of {val.annotation_file}"))
        inputs = {"detections": str(args.detections),
                  "cues": None if args.cues is None else str(args.cues)}
        metrics = infer_model(net, spec, val, box_sets, tmp, params.eval, rt, inputs)
        if info.is_main:
            finish_dir(args.out)
            write_json(args.details, metrics)


if __name__ == "__main__":
    run(main)
