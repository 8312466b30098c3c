"""What the infer stage writes for one model: per box mode its heatmaps, instance index and
results (hintpose.topdown.outputs names the files), the per-hop AP of a recurrent model, the
cue probe, and ``infer.json`` (the model's spec, the eval settings and every count)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from hintpose.config import EvalParams
from hintpose.data.coco import CocoPersons
from hintpose.io import write_csv, write_json
from hintpose.runtime import Runtime, current_dist
from hintpose.topdown.cue_probe import ProbeSettings, run_cue_probe
from hintpose.topdown.inference import PredictSettings, run_inference
from hintpose.topdown.outputs import inference_files
from hintpose.topdown.postprocess import PostSettings
from hintpose.topdown.spec import ModelSpec
from hintpose.topdown.val_ap import earlier_hop_files, hop_aps

#: (box mode, box records as box_instances takes them, where they came from, for errors)
BoxSet = tuple[str, Sequence[dict[str, Any]], str]


def infer_model(net: torch.nn.Module, spec: ModelSpec, coco: CocoPersons,
                box_sets: Sequence[BoxSet], folder: Path, ev: EvalParams, rt: Runtime,
                inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Run ``net`` on every box set and the cue probe, writing the files into ``folder``
    (every rank of a process group calls this with the same folder; only rank 0 writes
    beyond its share of the heatmaps). Returns the counts (rank 0; the others: {}), which
    ``infer.json`` holds too, with the ``inputs`` it records (the files the boxes and cues
    came from)."""
    main = current_dist().is_main
    predict, post = PredictSettings.of(ev), PostSettings.of(ev, coco)
    metrics: dict[str, Any] = {"cue": spec.cue, "recurrent": spec.recurrent,
                               "cues_file": inputs.get("cues") is not None}
    for mode, boxes, source in box_sets:
        files = inference_files(folder, mode)
        hop_files = earlier_hop_files(files["heatmaps"], spec.hops)
        out = run_inference(net, spec, coco, boxes, source, files["heatmaps"], rt, predict,
                            post, hop_files)
        if not main:
            continue
        write_csv(files["index"], out.index)
        write_json(files["results"], out.results, indent=None)
        stats = metrics[mode] = dict(out.stats)
        if out.cue_aware_results is not None:
            write_json(files["cue_aware"], out.cue_aware_results, indent=None)
            stats["cue_aware_results"] = len(out.cue_aware_results)
        if hop_files:  # a recurrent model: does each hop refine the one before?
            stats["hop_AP"] = [round(ap, 2) for ap in hop_aps(coco, out, hop_files)]
        note = ""
        if spec.conditioning.takes_input and stats["cue_fallbacks"]:
            note = (f"; {stats['cue_fallbacks']} of {stats['boxes']} boxes had no cue and used "
                    "their center")
        print(f"infer {spec.name} ({mode}): {stats['instances']} instances from "
              f"{stats['boxes']} boxes in {stats['seconds']} s "
              f"({current_dist().world_size} process(es)), {stats['results']} poses after "
              f"OKS-NMS{note}")
    probe_file = folder / "cue_probe_heatmaps.npy"
    probe = run_cue_probe(net, spec, coco, probe_file, ProbeSettings.of(ev), rt)
    if not main:
        return {}
    probe_file.unlink(missing_ok=True)  # not written when there are no pairs
    metrics["cue_probe"] = probe
    print(f"infer {spec.name} (cue probe): on {probe['pairs']} crowded GT pairs, cued on the "
          f"neighbour it estimates the neighbour in {probe['follow_rate']:.1%} "
          f"(OKS {probe['oks_other']:.3f}; own cue: OKS {probe['oks_own']:.3f})")
    settings = {"model": spec.to_json(), "eval": dataclasses.asdict(ev), "bf16": rt.bf16,
                "device": str(rt.device), **inputs, **metrics}
    write_json(folder / "infer.json", settings)
    return metrics
