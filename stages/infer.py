"""Stage infer@<model>: run one trained pose model on the val split, on detector and GT boxes.

For each box mode (``det``: the detections file; ``gt``: the GT persons HRNet evaluates with)
the output folder gets heatmaps (flip-tested with ``eval.flip_test``) as one float16 array
(``heatmaps_<mode>.npy``),
the instance index (``instances_<mode>.csv``, row i = heatmap i) and COCO keypoint results
after decoding, rescoring and OKS-NMS (``results_<mode>.json``, the report's protocol: every
cue's pose scored alike; a cue model with ``eval.neighbour_decay`` < 1 also writes
``results_<mode>_cueaware.json``, MIPNet's cue-aware scoring); ``infer.json`` records the
model and settings. Instance-cue models run once per (box, cue) with cues from ``--cues`` (a
list aligned with the detections); GT boxes take the cue points of their image that lie
inside them. A box without a cue (or every box, without ``--cues``) uses its center; those
fallbacks are counted. Everything is written to ``<out>.partial`` first
and replaces ``<out>`` only when complete. ``<out>/infer.json`` (settings, counts) and the
``--details`` JSON (counts) also hold the cue probe (hintpose.topdown.cue_probe: does the
model estimate the person its cue marks?) and, for a recurrent model, the AP of every hop's
heatmaps (``hop_AP``, hop 1 first, per box mode). With ``runtime.procs`` > 1 the stage checks its
params and model folder, then reruns itself as that many processes (hintpose.launch) that
split the boxes between them; rank 0 decodes and writes.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

from hintpose.cli import run
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.errors import DataError
from hintpose.launch import in_process_group, launch_local, threads_per_process
from hintpose.models.folder import read_config


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
    val.check_keypoints(read_config(args.model_dir, "pose model", "train")["keypoint_names"],
                        args.model_dir)
    rp = params.runtime
    if rp.procs > 1 and not in_process_group():
        sys.exit(launch_local(rp.procs, threads_per_process(rp.procs, rp.threads)))

    # Imported only now: a parent that relaunches itself never loads torch.
    from hintpose.io import finish_dir, partial_dir, start_dir, write_json
    from hintpose.runtime import distributed_session, from_params
    from hintpose.topdown.boxes import cues_inside, gt_boxes, read_boxes, read_cues, with_cues
    from hintpose.topdown.cue_probe import run_cue_probe
    from hintpose.topdown.inference import load_pose_model, run_inference
    from hintpose.topdown.outputs import inference_files
    from hintpose.topdown.val_ap import earlier_hop_files, hop_aps

    with distributed_session(rp.device) as info:
        coco = val
        detections = read_boxes(args.detections, coco)
        gt = gt_boxes(coco)
        if args.cues is not None:
            detections = with_cues(detections, read_cues(args.cues, detections,
                                                         str(args.detections)))
            gt = with_cues(gt, cues_inside(gt, detections))
        rt = from_params(rp, info.local_rank, announce=info.is_main)
        net, config = load_pose_model(args.model_dir, rt.device)
        net.to(memory_format=rt.memory_format)

        # Every rank predicts a share of the heatmaps into tmp; rank 0 writes the rest.
        tmp = start_dir(args.out) if info.is_main else partial_dir(args.out)
        name = config.get("name", args.model_dir.name)
        metrics = {"instance_cue": bool(config["instance_cue"]),
                   "recurrent": bool(config["recurrent"]), "cues_file": args.cues is not None}
        modes = (("det", detections, str(args.detections)),
                 ("gt", gt, f"GT boxes of {coco.annotation_file}"))
        for mode, boxes, source in modes:
            files = inference_files(tmp, mode)
            hop_files = earlier_hop_files(files["heatmaps"], int(config["hops"]))
            out = run_inference(net, config, coco, boxes, source, files["heatmaps"],
                                params.eval, rt, hop_files)
            if not info.is_main:
                continue
            out.index.to_csv(files["index"], index=False)
            write_json(files["results"], out.results, indent=None)
            metrics[mode] = out.stats
            if out.cue_aware_results is not None:
                write_json(files["cue_aware"], out.cue_aware_results, indent=None)
                metrics[mode]["cue_aware_results"] = len(out.cue_aware_results)
            if hop_files:  # a recurrent model: does each hop refine the one before?
                metrics[mode]["hop_AP"] = [round(ap, 2)
                                           for ap in hop_aps(coco, out, hop_files)]
            note = ""
            if config["instance_cue"] and out.stats["cue_fallbacks"]:
                note = (f"; {out.stats['cue_fallbacks']} of {out.stats['boxes']} boxes had no "
                        "cue and used their center")
            print(f"infer {name} ({mode}): {out.stats['instances']} instances from "
                  f"{out.stats['boxes']} boxes in {out.stats['seconds']} s "
                  f"({info.world_size} process(es)), {out.stats['results']} poses after "
                  f"OKS-NMS{note}")
        probe_file = tmp / "cue_probe_heatmaps.npy"
        probe = run_cue_probe(net, config, coco, probe_file, params.eval, rt)
        if info.is_main:
            probe_file.unlink(missing_ok=True)  # not written when there are no pairs
            metrics["cue_probe"] = probe
            print(f"infer {name} (cue probe): on {probe['pairs']} crowded GT pairs, cued on "
                  f"the neighbour it estimates the neighbour in {probe['follow_rate']:.1%} "
                  f"(OKS {probe['oks_other']:.3f}; own cue: OKS {probe['oks_own']:.3f})")
            settings = {"model": config, "eval": dataclasses.asdict(params.eval),
                        "bf16": rt.bf16, "device": str(rt.device),
                        "detections": str(args.detections),
                        "cues": None if args.cues is None else str(args.cues), **metrics}
            write_json(tmp / "infer.json", settings)
            finish_dir(args.out)
            write_json(args.details, metrics)


if __name__ == "__main__":
    run(main)
