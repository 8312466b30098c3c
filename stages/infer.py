"""Stage infer@<model>: run one trained pose model on the val split, on detector and GT boxes.

For each box mode (``det``: the detections file; ``gt``: the GT persons HRNet evaluates with)
the output folder gets flip-tested heatmaps as one float16 array (``heatmaps_<mode>.npy``),
the instance index (``instances_<mode>.csv``, row i = heatmap i) and COCO keypoint results
after decoding, rescoring and OKS-NMS (``results_<mode>.json``); ``infer.json`` records the
model and settings. Instance-cue models run once per (box, cue) with cues from ``--cues`` (a
list aligned with the detections); GT boxes take the cue points of their image that lie
inside them. A box without a cue (or every box, without ``--cues``) uses its center; those
fallbacks are counted in the metrics JSON. Everything is written to ``<out>.partial`` first
and replaces ``<out>`` only when complete. The metrics JSON also has the cue probe
(hintpose.cue_probe: does the model estimate the person its cue marks?). With ``eval.procs``
> 1 the stage checks its params and model folder, then reruns itself as that many processes
(hintpose.launch) that split the boxes between them; rank 0 decodes and writes.
"""

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

from hintpose.cli import run, write_text_atomic
from hintpose.config import load_params
from hintpose.errors import DataError
from hintpose.launch import in_process_group, launch_local, threads_per_process


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
    ap.add_argument("--metrics", type=Path, required=True)
    args = ap.parse_args()
    params = load_params(args.params)
    if not args.model_dir.is_dir():
        raise DataError(f"{args.model_dir}: model folder not found (run the train stage)")
    procs, threads = params.eval.procs, params.eval.threads
    if procs > 1 and not in_process_group():
        sys.exit(launch_local(procs, threads_per_process(procs, threads)))

    # Imported only now: a parent that relaunches itself never loads torch.
    import torch

    from hintpose.cue_probe import run_cue_probe
    from hintpose.data.coco import load_split
    from hintpose.inference import (
        cues_inside,
        gt_boxes,
        inference_files,
        read_boxes,
        read_cues,
        run_inference,
        with_cues,
    )
    from hintpose.training import (
        bf16_supported,
        distributed_session,
        load_pose_model,
        resolve_device,
    )
    with distributed_session(params.pose.device) as info:
        coco = load_split(args.dataset, "val")
        detections = read_boxes(args.detections, coco)
        gt = gt_boxes(coco)
        if args.cues is not None:
            detections = with_cues(detections, read_cues(args.cues, detections,
                                                         str(args.detections)))
            gt = with_cues(gt, cues_inside(gt, detections))
        device = resolve_device(params.pose.device, info.local_rank)
        if threads > 0:
            torch.set_num_threads(threads)
        train = params.pose.train
        net, config = load_pose_model(args.model_dir, device)
        if train.channels_last:
            net.to(memory_format=torch.channels_last)
        bf16 = train.bf16 and bf16_supported(device)

        # Every rank predicts a share of the heatmaps into tmp; rank 0 writes the rest.
        tmp = args.out.with_name(args.out.name + ".partial")
        if info.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        name = config.get("name", args.model_dir.name)
        metrics = {"instance_cue": bool(config["instance_cue"]),
                   "recurrent": bool(config["recurrent"]), "cues_file": args.cues is not None}
        modes = (("det", detections, str(args.detections), True),
                 ("gt", gt, f"GT boxes of {coco.annotation_file}", False))
        for mode, boxes, source, filter_boxes in modes:
            files = inference_files(tmp, mode)
            out = run_inference(net, config, coco, boxes, source, files["heatmaps"],
                                params.eval, device, bf16, train.channels_last, filter_boxes)
            if not info.is_main:
                continue
            out.index.to_csv(files["index"], index=False)
            files["results"].write_text(json.dumps(out.results) + "\n")
            metrics[mode] = out.stats
            note = ""
            if config["instance_cue"] and out.stats["cue_fallbacks"]:
                note = (f"; {out.stats['cue_fallbacks']} of {out.stats['boxes']} boxes had no "
                        "cue and used their center")
            print(f"infer {name} ({mode}): {out.stats['instances']} instances from "
                  f"{out.stats['boxes']} boxes in {out.stats['seconds']} s "
                  f"({info.world_size} process(es)), {out.stats['results']} poses after "
                  f"OKS-NMS{note}")
        probe_file = tmp / "cue_probe_heatmaps.npy"
        probe = run_cue_probe(net, config, coco, probe_file, params.eval, device, bf16,
                              train.channels_last)
        if info.is_main:
            probe_file.unlink(missing_ok=True)  # not written when there are no pairs
            metrics["cue_probe"] = probe
            print(f"infer {name} (cue probe): on {probe['pairs']} crowded GT pairs, cued on "
                  f"the neighbour it estimates the neighbour in {probe['follow_rate']:.1%} "
                  f"(OKS {probe['oks_other']:.3f}; own cue: OKS {probe['oks_own']:.3f})")
            settings = {"model": config, "eval": dataclasses.asdict(params.eval), "bf16": bf16,
                        "device": str(device), "detections": str(args.detections),
                        "cues": None if args.cues is None else str(args.cues)}
            (tmp / "infer.json").write_text(json.dumps(settings, indent=2) + "\n")
            shutil.rmtree(args.out, ignore_errors=True)
            tmp.rename(args.out)
            write_text_atomic(args.metrics, json.dumps(metrics, indent=2) + "\n")


if __name__ == "__main__":
    run(main)
