"""Where a cue model should win: AP as detector boxes go missing.

HintPose and MIPNet estimate several persons per box, one per instance cue, so a person whose
own box the detector missed can still be found from a neighbour's box. The study drops a
random share of the detector boxes (the same boxes for every model: drawn once per fraction
from the box list with a fixed seed), keeps the instances of the remaining boxes from each
model's ``infer`` output (its heatmaps and instance index, decoded once), and redoes the
rescoring, optional cue-aware scoring and OKS-NMS of
:func:`hintpose.topdown.postprocess.poses_to_results`. Per model,
protocol and fraction it reports the AP and the GT persons *without a box* (no kept box
with IoU >= ``BOX_IOU`` to theirs) that a final pose still finds (OKS >= ``FOUND_OKS``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hintpose.data.coco import CocoPersons
from hintpose.data.crowd import box_iou
from hintpose.ensemble import Member, load_member, members_heatmap_sigma
from hintpose.scoring.evaluation import coco_keypoint_eval
from hintpose.topdown.postprocess import PostSettings, coco_oks, decode_heatmaps, poses_to_results

__all__ = ["BOX_IOU", "FOUND_OKS", "ModelOutput", "load_model_output", "dropped_boxes",
           "persons_found", "box_removal_study", "plot_box_removal"]

#: A GT person has a box when a kept detection overlaps its box at least this much.
BOX_IOU = 0.5
#: A GT person is found by a pose of at least this OKS (COCO's AP50 match).
FOUND_OKS = 0.5


@dataclass(frozen=True)
class ModelOutput:
    """One model's decoded detector-box instances: poses (N, J, 3) in index order, the
    instance index (INDEX_COLUMNS) and the protocols to score it with (name -> neighbour
    decay; a cue-less model has only the report's)."""

    poses: np.ndarray
    index: pd.DataFrame
    protocols: Mapping[str, float]


def load_model_output(name: str, folder: Path, decoder: str,
                      neighbour_decay: float) -> ModelOutput:
    """An infer@<model> output's detector-box instances, decoded (checked and read as the
    ensemble reads its members: ``hintpose.ensemble.load_member``); a cue model's protocols
    include cue-aware scoring when ``neighbour_decay`` < 1."""
    member = Member(name, folder, 1.0)
    inst = load_member(member, "det")
    with inst.heatmaps as heat:
        sigma = members_heatmap_sigma([member]) if decoder == "dark" else 1.0
        poses = decode_heatmaps(lambda sl: heat.rows(np.arange(sl.start, sl.stop)),
                                len(inst.index),
                                inst.index[["center_x", "center_y"]].to_numpy(),
                                inst.index[["size_w", "size_h"]].to_numpy(), decoder, sigma)
    protocols = {"report": 1.0}
    if not inst.per_box and neighbour_decay != 1.0:
        protocols["cue-aware"] = neighbour_decay
    return ModelOutput(poses, inst.index, protocols)


def dropped_boxes(box_ids: Sequence[int], fraction: float, seed: int) -> set[int]:
    """``round(fraction x boxes)`` of ``box_ids`` drawn with ``seed``: growing fractions of one
    seed drop nested sets (a box dropped at 20 % is dropped at 40 % too)."""
    ids = np.sort(np.asarray(list(box_ids), dtype=np.int64))
    order = np.random.default_rng(seed).permutation(len(ids))
    return {int(b) for b in ids[order[:round(fraction * len(ids))]]}


def persons_found(coco: CocoPersons, boxes: pd.DataFrame,
                  results: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """(GT persons without a box among ``boxes`` (image_id, box_x, box_y, box_w, box_h), how
    many of them a result pose finds)."""
    boxes_of = {int(i): g[["box_x", "box_y", "box_w", "box_h"]].to_numpy()
                for i, g in boxes.groupby("image_id")}
    poses_of: dict[int, list[np.ndarray]] = {}
    for r in results:
        poses_of.setdefault(int(r["image_id"]), []).append(np.reshape(r["keypoints"], (-1, 3)))
    boxless = found = 0
    for ann in coco.training_persons():
        image_boxes = boxes_of.get(int(ann["image_id"]))
        if image_boxes is not None and box_iou(ann["clean_bbox"], image_boxes).max() >= BOX_IOU:
            continue
        boxless += 1
        poses = poses_of.get(int(ann["image_id"]))
        if poses:
            gt = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)
            oks = coco_oks(gt, np.stack(poses), float(ann["area"]), coco.sigmas)
            found += int(oks.max() >= FOUND_OKS)
    return boxless, found


def box_removal_study(coco: CocoPersons, outputs: Mapping[str, ModelOutput],
                      fractions: Sequence[float], seed: int,
                      post: PostSettings) -> pd.DataFrame:
    """One row per (model, protocol, fraction): ``AP`` (percent), ``boxes`` kept,
    ``boxless`` GT persons and ``found`` (see the module docstring). Every model must have
    run on the same detector boxes."""
    box_sets = {name: frozenset(out.index["box_index"].unique().tolist())
                for name, out in outputs.items()}
    if len(set(box_sets.values())) > 1:
        raise ValueError(f"the models {', '.join(outputs)} ran on different detector boxes")
    all_boxes = sorted(next(iter(box_sets.values()), frozenset()))
    rows = []
    for fraction in fractions:
        dropped = dropped_boxes(all_boxes, fraction, seed)
        for name, out in outputs.items():
            keep = ~out.index["box_index"].isin(dropped).to_numpy()
            index = out.index[keep].reset_index(drop=True)
            kept_boxes = index.drop_duplicates("box_index")
            for protocol, decay in out.protocols.items():
                results = poses_to_results(out.poses[keep], index,
                                           dataclasses.replace(post, neighbour_decay=decay))
                ap = coco_keypoint_eval(coco.data, results, sigmas=coco.sigmas)["AP"]
                boxless, found = persons_found(coco, kept_boxes, results)
                rows.append({"model": name, "protocol": protocol, "fraction": float(fraction),
                             "boxes": len(kept_boxes), "AP": round(100 * float(ap), 2),
                             "boxless": boxless, "found": found})
    return pd.DataFrame(rows, columns=["model", "protocol", "fraction", "boxes", "AP",
                                       "boxless", "found"])


def plot_box_removal(frame: pd.DataFrame, path: Any) -> None:
    """Two panels against the share of detector boxes dropped: AP, and the share of GT
    persons without a box that a pose still finds; one line per (model, protocol)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_ap, ax_found) = plt.subplots(1, 2, figsize=(9, 3.6))
    for i, ((model, protocol), rows) in enumerate(frame.groupby(["model", "protocol"],
                                                                sort=False)):
        label = model if protocol == "report" else f"{model} ({protocol})"
        style = {"marker": "o", "color": f"C{i % 10}",
                 "linestyle": "-" if protocol == "report" else "--"}
        share = 100 * rows["fraction"]
        ax_ap.plot(share, rows["AP"], label=label, **style)
        ax_found.plot(share, 100 * rows["found"] / rows["boxless"].clip(lower=1), label=label,
                      **style)
    ax_ap.set_ylabel("keypoint AP, detector boxes")
    ax_found.set_ylabel("GT persons without a box found, %")
    for ax in (ax_ap, ax_found):
        ax.set_xlabel("detector boxes dropped, %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
