"""Figures of the report stage: the report's Figure 3 (one crowded box, two instance cues, two
predictions), the training curves of every trained network, and baseline vs I.C.+R.R.
predictions on the most crowded val persons.

Everything is drawn from the pipeline's own outputs (dvclive training logs, cue files, result sets)
and, for Figure 3, one forward pass of a trained cue model per cue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from hintpose.data.coco import CocoPersons, read_image
from hintpose.data.crowd import box_iou
from hintpose.errors import DataError
from hintpose.report.visualize import PALETTE, draw_person
from hintpose.topdown.codec import decode
from hintpose.topdown.postprocess import coco_oks
from hintpose.topdown.samples import Instance, TopDownDataset
from hintpose.topdown.spec import ModelSpec
from hintpose.trainlog import read_log


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# --------------------------------------------------------------------------- training curves


def read_logs(logs: Mapping[str, Path]) -> dict[str, pd.DataFrame]:
    """Per-epoch dvclive logs by name (hintpose.trainlog); a missing one is a DataError."""
    return {name: read_log(path, f"training log of {name}") for name, path in logs.items()}


def plot_training_curves(logs: Mapping[str, pd.DataFrame], path: Path) -> None:
    """One panel per network family (the column each family logs), one line per network:
    training loss solid, validation loss (when logged) dashed, on a log scale, against the
    epoch."""
    plt = _pyplot()
    families: dict[str, list[str]] = {}
    for name in logs:
        families.setdefault(name.split("@")[0], []).append(name)
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 3.4), squeeze=False)
    for ax, (family, names) in zip(axes[0], families.items(), strict=True):
        for i, name in enumerate(names):
            frame = logs[name]
            color = f"C{i % 10}"
            label = name.split("@")[-1]
            ycol = "train_loss" if "train_loss" in frame else next(
                (c for c in frame.columns if c.startswith("loss")), None)
            if ycol is not None:
                ax.plot(frame["epoch"], frame[ycol], color=color, label=f"{label} train")
            if "val_loss" in frame:
                ax.plot(frame["epoch"], frame["val_loss"], color=color, ls="--",
                        label=f"{label} val")
        ax.set_title(family)
        ax.set_yscale("log")  # losses of very different sizes (hops, spikes) stay readable
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


#: Per network family: the accuracy its log holds (column, scale to percent, axis label).
CURVE_METRICS = {
    "pose": ("val_AP", 1.0, "keypoint AP, GT boxes (val_images)"),
    "detector": ("val_AP", 100.0, "box AP (val images)"),
    "multiposenet": ("val_cue_recall", 100.0, "multi-person cue recall, GT boxes"),
    "posefix": ("val_l1", 1.0, "mean joint error of refined val poses (map px)"),
    "cue": ("follow_rate", 100.0, "cue probe: follow rate, %"),
}


def minutes_axis(frame: pd.DataFrame, start: float = 0.0) -> pd.Series:
    """Wall-clock minutes at the end of each logged epoch (``seconds`` summed), from ``start``."""
    return start + frame["seconds"].fillna(0).cumsum() / 60.0


def plot_learning_curves(logs: Mapping[str, pd.DataFrame], path: Path) -> None:
    """The learning curve of every trained network: its accuracy (CURVE_METRICS) after each
    epoch against the wall-clock minutes of training so far. The pose models continue from
    the pretrained HRNet, so their curves start where ``pose@pretrain``'s ends; a log without
    the metric (or without ``seconds``) is left out of its panel."""
    plt = _pyplot()
    families: dict[str, list[str]] = {}
    for name in logs:
        if name.split("@")[0] in CURVE_METRICS:
            families.setdefault(name.split("@")[0], []).append(name)
    probed = [n for n in families.get("pose", []) if "follow_rate" in logs[n]]
    if probed:  # the cue models' probe: when does the cue start to be read?
        families["cue"] = probed
    fig, axes = plt.subplots(1, max(1, len(families)), figsize=(4.2 * max(1, len(families)), 3.4),
                             squeeze=False)
    pre = logs.get("pose@pretrain")
    has_pre = pre is not None and "seconds" in pre and len(pre) > 0
    pre_minutes = float(minutes_axis(pre).iloc[-1]) if has_pre else 0.0

    def start_of(family: str, name: str) -> float:
        """Pose models continue the pretraining; a branch starts where the plain branch does
        (its last epochs in ``pose@pretrain``'s log)."""
        if family not in ("pose", "cue") or name == "pose@pretrain" or not has_pre:
            return 0.0
        if name.startswith("pose@pretrain_"):
            start = len(pre) - len(logs[name])
            return float(minutes_axis(pre).iloc[start - 1]) if start > 0 else 0.0
        return pre_minutes
    for ax, (family, names) in zip(axes[0], families.items(), strict=False):
        column, scale, label = CURVE_METRICS[family]
        for i, name in enumerate(names):
            frame = logs[name]
            if column not in frame or "seconds" not in frame or not len(frame):
                continue
            rows = frame.dropna(subset=[column])
            x = minutes_axis(frame, start_of(family, name))[rows.index]
            ax.plot(x, rows[column] * scale, marker="o", ms=3, color=f"C{i % 10}",
                    label=name.split("@")[-1])
        ax.set_title(family)
        ax.set_xlabel("training minutes")
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- Figure 3


@dataclass(frozen=True)
class CuePick:
    """A detection box with two cues on two different GT persons."""

    image_id: int
    bbox: tuple[float, float, float, float]
    cues: tuple[tuple[float, float], tuple[float, float]]


def _nearest_person(point: Sequence[float], persons: Sequence[dict[str, Any]]) -> int:
    """Index of the GT person with a labeled joint nearest to ``point``."""
    best, best_d = -1, np.inf
    for i, ann in enumerate(persons):
        k = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        k = k[k[:, 2] > 0]
        if len(k):
            d = float(np.min(np.linalg.norm(k[:, :2] - np.asarray(point[:2]), axis=1)))
            if d < best_d:
                best, best_d = i, d
    return best


def pick_crowded_box(coco: CocoPersons, cue_records: Sequence[dict[str, Any]]) -> CuePick:
    """The detection whose first two cues lie nearest to two different GT persons, preferring
    the most crowded image (CrowdPose crowd index); a DataError when no box qualifies."""
    candidates = []
    for rec in cue_records:
        cues = rec.get("cues") or []
        persons = [a for a in coco.annotations_of(rec["image_id"]) if not a.get("iscrowd", 0)]
        for a in range(len(cues)):
            for b in range(a + 1, len(cues)):
                pa, pb = _nearest_person(cues[a], persons), _nearest_person(cues[b], persons)
                if pa >= 0 and pb >= 0 and pa != pb:
                    crowd = float(coco.images[rec["image_id"]].get("crowdIndex", 0.0))
                    candidates.append((-crowd, -rec["score"], rec["image_id"], tuple(rec["bbox"]),
                                       (tuple(cues[a][:2]), tuple(cues[b][:2]))))
                    break
            else:
                continue
            break
    if not candidates:
        raise DataError("no detection box has two cues on two different persons: nothing to "
                        "show for Figure 3")
    _, _, image_id, bbox, cues = min(candidates)
    return CuePick(image_id, bbox, cues)


@torch.no_grad()
def plot_cue_figure(net: torch.nn.Module, spec: ModelSpec, coco: CocoPersons,
                    pick: CuePick, path: Path, decoder: str = "hrnet") -> None:
    """The report's Figure 3: for each of the two cues, the input crop with the cue, the
    predicted heatmaps (max over joints) and the skeleton decoded with ``decoder``."""
    plt = _pyplot()
    instances = [Instance(pick.image_id, pick.bbox, 1.0, cue=c) for c in pick.cues]
    dataset = TopDownDataset(coco, instances, spec.data_params(), train=False,
                             cue=spec.conditioning)
    skeleton = coco.skeleton
    fig, axes = plt.subplots(2, 3, figsize=(7.5, 6.2))
    for row, i in enumerate(range(len(instances))):
        sample = dataset[i]
        assert isinstance(sample, dict)
        image, cue, meta = sample["image"], sample["cue"], sample["meta"]
        heat = net(image[None], cue[None])[-1].float().numpy()
        rgb = image.numpy().transpose(1, 2, 0) * np.array([0.229, 0.224, 0.225]) + np.array(
            [0.485, 0.456, 0.406])
        rgb = np.clip(rgb, 0, 1)
        h_in, w_in = rgb.shape[:2]
        cx, cy = meta["cue"]
        axes[row][0].imshow(rgb)
        axes[row][0].plot([cx], [cy], "r+", ms=14, mew=2)
        axes[row][0].set_title(f"cue {row + 1}", fontsize=9)
        hm = cv2.resize(heat[0].max(axis=0), (w_in, h_in), interpolation=cv2.INTER_LINEAR)
        axes[row][1].imshow(rgb)
        axes[row][1].imshow(hm, alpha=0.6, cmap="jet")
        axes[row][1].set_title("heatmaps (max over joints)", fontsize=9)
        # Decode in input pixels: a crop of the input size centred on the input.
        center = np.array([[w_in / 2, h_in / 2]])
        coords, maxvals = decode(heat, center, np.array([[w_in, h_in]], dtype=np.float64),
                                 decoder, spec.codec.sigma)
        canvas = np.ascontiguousarray((rgb[:, :, ::-1] * 255).astype(np.uint8))
        kpts = np.concatenate([coords[0], maxvals[0]], axis=1)
        draw_person(canvas, kpts, skeleton, PALETTE[row % len(PALETTE)], min_visibility=0.0)
        axes[row][2].imshow(canvas[:, :, ::-1])
        axes[row][2].set_title("prediction", fontsize=9)
        for ax in axes[row]:
            ax.axis("off")
    fig.suptitle(f"{spec.name or 'model'}: image {pick.image_id}, one box, two cues",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- crowded persons


def most_crowded_persons(coco: CocoPersons, count: int) -> list[dict[str, Any]]:
    """The ``count`` labeled val persons whose box overlaps another person's box the most
    (largest IoU), most crowded first."""
    scored = []
    for image_id in coco.images:
        persons = [a for a in coco.annotations_of(image_id)
                   if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0]
        boxes = np.array([a["bbox"] for a in persons], dtype=np.float64).reshape(-1, 4)
        for i, ann in enumerate(persons):
            others = np.delete(boxes, i, axis=0)
            if len(others):
                scored.append((-float(box_iou(boxes[i], others).max()), ann["id"], ann))
    scored.sort(key=lambda t: (t[0], t[1]))
    return [ann for _, _, ann in scored[:count]]


def best_match(ann: dict[str, Any], results: Sequence[dict[str, Any]],
               sigmas: np.ndarray) -> tuple[np.ndarray | None, float]:
    """The result of ``ann``'s image with the highest OKS (``sigmas``) to it, and that OKS."""
    own = [r for r in results if r["image_id"] == ann["image_id"]]
    if not own:
        return None, 0.0
    gt = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
    preds = np.array([r["keypoints"] for r in own], dtype=np.float64).reshape(len(own), -1, 3)
    oks = coco_oks(gt, preds, float(ann["area"]), sigmas)
    k = int(np.argmax(oks))
    return preds[k], float(oks[k])


def plot_crowded_grid(coco: CocoPersons, persons: Sequence[dict[str, Any]],
                      results: Mapping[str, Sequence[dict[str, Any]]], path: Path) -> None:
    """One row per crowded person: its GT, then each result set's best-matching pose (OKS
    in the caption), cropped around the person's box."""
    plt = _pyplot()
    names = list(results)
    skeleton = coco.skeleton
    cols = 1 + len(names)
    fig, axes = plt.subplots(len(persons), cols, figsize=(2.3 * cols, 2.6 * len(persons)),
                             squeeze=False)
    for row, ann in enumerate(persons):
        image = read_image(coco.image_path(ann["image_id"]))
        x, y, w, h = ann["bbox"]
        pad = 0.25 * max(w, h)
        x0, y0 = int(max(0, x - pad)), int(max(0, y - pad))
        x1 = int(min(image.shape[1], x + w + pad))
        y1 = int(min(image.shape[0], y + h + pad))
        panels = [("GT", np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3), None)]
        for name in names:
            pred, oks = best_match(ann, results[name], coco.sigmas)
            panels.append((name, pred, oks))
        for col, (title, kpts, oks) in enumerate(panels):
            canvas = image.copy()
            if kpts is not None:
                draw_person(canvas, kpts, skeleton, PALETTE[col % len(PALETTE)])
            ax = axes[row][col]
            ax.imshow(canvas[y0:y1, x0:x1, ::-1])
            ax.set_title(title if oks is None else f"{title} OKS {oks:.2f}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
