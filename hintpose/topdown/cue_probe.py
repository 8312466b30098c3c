"""Does a pose model follow its instance cue? A probe on crowded GT pairs of the val split.

AP cannot tell whether an instance-cue model reads its cue: with a box centred on one person
the cue is redundant, and a model that ignores it scores the same. The probe asks directly.
For pairs (a, b) of overlapping persons (box IoU >= ``min_iou``, at least ``min_joints`` of
b's labeled joints inside a's box: the crops the training's ``other_box_prob`` is about), the
model runs on a's box twice, once cued on a and once cued on b (each person's oracle point
inside a's box, ``hintpose.data.crowd.oracle_point``). A model that reads the cue estimates
b in the second run although the box is a's. Reported per model:

- ``oks_own``: mean OKS to a of the prediction cued on a;
- ``oks_other``: mean OKS to b of the prediction cued on b;
- ``follow_rate``: the fraction of pairs whose b-cued prediction is closer (OKS) to b than
  to a.

A model without a cue input predicts the same pose for both cues; its ``follow_rate`` is the
chance level of the pairs (how often a's box alone already gives b), the number a cue model
is to be compared with.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hintpose.config import EvalParams
from hintpose.data.coco import CocoPersons
from hintpose.data.crowd import box_iou, oracle_point, points_in_box
from hintpose.data.keypoints import COCO_SIGMAS
from hintpose.runtime import Runtime, current_dist
from hintpose.topdown.codec import decode
from hintpose.topdown.inference import PredictSettings, predict_heatmaps
from hintpose.topdown.postprocess import coco_oks
from hintpose.topdown.samples import (
    OTHER_BOX_MIN_IOU,
    OTHER_BOX_MIN_JOINTS,
    Instance,
    TopDownDataset,
)
from hintpose.topdown.spec import ModelSpec

__all__ = ["Pair", "ProbeSettings", "crowded_pairs", "follow_stats", "probe_instances",
           "run_cue_probe", "probe_row"]


@dataclass(frozen=True)
class ProbeSettings:
    """The probe's size (``pairs``, 0: every pair) and how it predicts."""

    pairs: int = 300
    decoder: str = "hrnet"
    batch_size: int = 32
    workers: int = 0
    flip_test: bool = False

    @classmethod
    def of(cls, ev: EvalParams) -> ProbeSettings:
        """The ``eval`` section's (``cue_probe_pairs`` pairs)."""
        return cls(ev.cue_probe_pairs, ev.decoder, ev.batch_size, ev.workers, ev.flip_test)

    @property
    def predict(self) -> PredictSettings:
        return PredictSettings(self.batch_size, self.workers, self.flip_test, self.decoder)

#: (a, b, cue on a, cue on b): annotations of the boxed and the neighbouring person, and
#: their cue points (x, y) in image pixels.
Pair = tuple[dict[str, Any], dict[str, Any], tuple[float, float], tuple[float, float]]


def crowded_pairs(coco: CocoPersons, max_pairs: int, min_iou: float = OTHER_BOX_MIN_IOU,
                  min_joints: int = OTHER_BOX_MIN_JOINTS) -> list[Pair]:
    """Ordered pairs (a, b) of trainable persons of one image with box IoU >= ``min_iou`` and
    at least ``min_joints`` of b's labeled joints inside a's (clipped) box, each with both cue
    points inside a's box. In image, then annotation order; more than ``max_pairs`` are
    thinned to ``max_pairs`` evenly spaced ones (0: all)."""
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for ann in coco.training_persons():
        by_image[ann["image_id"]].append(ann)
    pairs: list[Pair] = []
    for image_id in sorted(by_image):
        persons = by_image[image_id]
        for a in persons:
            box = a["clean_bbox"]
            for b in persons:
                if b is a or box_iou(box, [b["clean_bbox"]])[0] < min_iou:
                    continue
                k = np.asarray(b["keypoints"], np.float64).reshape(-1, 3)
                if int(points_in_box(k[k[:, 2] > 0], box).sum()) < min_joints:
                    continue
                cue_a = oracle_point(a["keypoints"], box)
                cue_b = oracle_point(b["keypoints"], box)
                if cue_a is not None and cue_b is not None:
                    pairs.append((a, b, cue_a, cue_b))
    if 0 < max_pairs < len(pairs):
        keep = np.linspace(0, len(pairs) - 1, max_pairs).round().astype(int)
        pairs = [pairs[i] for i in keep]
    return pairs


def probe_instances(pairs: list[Pair], use_cue: bool) -> list[Instance]:
    """The network inputs: per pair a's box cued on a, then cued on b (``use_cue``), or a's
    box once (a model without a cue input)."""
    out = []
    for a, _, cue_a, cue_b in pairs:
        box = tuple(float(v) for v in a["clean_bbox"])
        for cue in ((cue_a, cue_b) if use_cue else (None,)):
            out.append(Instance(a["image_id"], box, 1.0, cue=cue))
    return out


def follow_stats(pairs: list[Pair], own: np.ndarray, other: np.ndarray,
                 sigmas: np.ndarray = COCO_SIGMAS) -> dict[str, float]:
    """``oks_own``, ``oks_other``, ``follow_rate`` (see the module docstring) of the poses
    predicted cued on a (``own``, (P, J, 2+)) and cued on b (``other``), with the dataset's
    OKS ``sigmas``."""
    if not pairs:
        return {"pairs": 0, "oks_own": 0.0, "oks_other": 0.0, "follow_rate": 0.0}
    rows = []
    for (a, b, _, _), p_own, p_other in zip(pairs, own, other, strict=True):
        gt_a = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
        gt_b = np.asarray(b["keypoints"], np.float64).reshape(-1, 3)
        rows.append((coco_oks(gt_a, p_own[None], float(a["area"]), sigmas)[0],
                     coco_oks(gt_b, p_other[None], float(b["area"]), sigmas)[0],
                     coco_oks(gt_a, p_other[None], float(a["area"]), sigmas)[0]))
    oks = np.asarray(rows)
    return {"pairs": len(pairs), "oks_own": round(float(oks[:, 0].mean()), 4),
            "oks_other": round(float(oks[:, 1].mean()), 4),
            "follow_rate": round(float((oks[:, 1] > oks[:, 2]).mean()), 4)}


def run_cue_probe(
    model: torch.nn.Module, spec: ModelSpec, coco: CocoPersons, heatmap_file: Path,
    settings: ProbeSettings, rt: Runtime,
) -> dict[str, float]:
    """Run ``model`` (described by ``spec``) on the probe pairs of ``coco`` (at most
    ``settings.pairs``) and return :func:`follow_stats`. The heatmaps pass through
    ``heatmap_file``, which the caller removes. Inside a process group every rank calls this
    (see ``predict_heatmaps``) and only rank 0 gets the statistics (the others: {})."""
    use_cue = spec.conditioning.probe
    pairs = crowded_pairs(coco, settings.pairs)
    if not pairs:
        return follow_stats(pairs, np.zeros(0), np.zeros(0), coco.sigmas)
    dataset = TopDownDataset(coco, probe_instances(pairs, use_cue), spec.data_params(), False,
                             cue=spec.conditioning)
    centers, sizes = predict_heatmaps(model, dataset, heatmap_file, settings.predict, rt)
    if not current_dist().is_main:  # rank 0 decodes (and the caller removes the file)
        return {}
    heat = np.load(heatmap_file, mmap_mode="r")
    coords, _ = decode(np.asarray(heat, dtype=np.float32), centers, sizes, settings.decoder,
                       dataset.codec.sigma)
    own, other = (coords[0::2], coords[1::2]) if use_cue else (coords, coords)
    return follow_stats(pairs, own, other, coco.sigmas)


#: The probe's figures a training log records after every epoch (``pose.*.probe_pairs``).
PROBE_COLUMNS = ("follow_rate", "oks_own", "oks_other")


def probe_row(model: torch.nn.Module, spec: ModelSpec, coco: CocoPersons,
              heatmap_file: Path, settings: ProbeSettings, rt: Runtime) -> dict[str, float]:
    """:func:`run_cue_probe` as a training-log row (PROBE_COLUMNS, every rank gets them):
    the learning curve of the cue. ``model`` is put in eval mode and back."""
    was_training = model.training
    model.eval()
    try:
        stats = run_cue_probe(model, spec, coco, heatmap_file, settings, rt)
    finally:
        model.train(was_training)
    info = current_dist()
    values = [float(stats.get(k, float("nan"))) for k in PROBE_COLUMNS]
    if info.is_main:
        heatmap_file.unlink(missing_ok=True)
    if info.distributed:
        shared = torch.tensor(values, dtype=torch.float64)
        torch.distributed.broadcast(shared, 0)
        values = shared.tolist()
    return dict(zip(PROBE_COLUMNS, values, strict=True))
