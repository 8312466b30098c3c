"""Where PoseFix helps: per labeled GT joint, is the refined estimate closer to the GT than the
input, by the input joint's error type (Ronchi & Perona's taxonomy, as PoseFix) and by the
image's crowd level; and the error mix of a results file (the shares of each type per joint
group), to which PoseFix's error synthesis can be fitted (``posefix.error_mix``); and the
figure of the first (:func:`plot_refinement`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hintpose.data.coco import CocoPersons
from hintpose.data.crowd import CROWD_LEVELS, crowd_index, crowd_level
from hintpose.posefix.synthesis import ERROR_TYPES, GROUP_NAMES, KS_GOOD, KS_JITTER, JointGroups
from hintpose.topdown.postprocess import coco_oks, keypoint_similarity


def classify_joints(pose: np.ndarray, gt: np.ndarray, others: np.ndarray, area: float,
                    sigmas: np.ndarray, counterpart: np.ndarray) -> np.ndarray:
    """Error type (ERROR_TYPES index, -1 for joints unlabeled in ``gt``) of each joint of an
    estimated pose (J, 2+) matched to ``gt`` (J, 3), with the image's other GT persons
    ``others`` (M, J, 3), by keypoint similarity as Ronchi & Perona: good >= 0.85, jitter
    >= 0.5 to the GT; else inversion / swap when >= 0.5 to the counterpart / another
    person's same or counterpart joint; else miss."""
    types = np.full(len(gt), -1)
    for j in np.flatnonzero(gt[:, 2] > 0):

        def ks(p: np.ndarray, j: int = j) -> float:
            return float(keypoint_similarity(((pose[j, :2] - p) ** 2).sum(), area, sigmas[j]))

        k = ks(gt[j, :2])
        c = counterpart[j]
        if k >= KS_GOOD:
            types[j] = 0
        elif k >= KS_JITTER:
            types[j] = 1
        elif c >= 0 and gt[c, 2] > 0 and ks(gt[c, :2]) >= KS_JITTER:
            types[j] = 2
        elif any(o[i, 2] > 0 and ks(o[i, :2]) >= KS_JITTER for o in others
                 for i in ([j] if c < 0 else [j, c])):
            types[j] = 3
        else:
            types[j] = 4
    return types


@dataclass(frozen=True)
class MatchedPose:
    """An input pose matched to a GT person, with its joints' error types (classify_joints)."""

    index: int  # of the input entry
    pose: np.ndarray  # (J, 3)
    gt: np.ndarray  # (J, 3)
    area: float
    level: str  # the image's crowd level
    types: np.ndarray  # (J,)


def matched_inputs(coco: CocoPersons, inputs: Sequence[dict[str, Any]], min_oks: float = 0.1
                   ) -> Iterator[MatchedPose]:
    """The input poses matched greedily (best score first) to the GT person of highest OKS
    (at least ``min_oks``; each GT once), with the error type of every joint."""
    sigmas = coco.sigmas
    counterpart = JointGroups.from_names(coco.category["keypoints"]).counterpart
    persons = defaultdict(list)
    for ann in coco.training_persons():
        persons[ann["image_id"]].append(ann)
    levels = {iid: crowd_level(img.get("crowdIndex", crowd_index(coco.annotations_of(iid))))
              for iid, img in coco.images.items()}
    taken: set[int] = set()
    for i in sorted(range(len(inputs)), key=lambda i: -inputs[i]["score"]):
        iid = inputs[i]["image_id"]
        pose = np.reshape(inputs[i]["keypoints"], (-1, 3)).astype(np.float64)
        best, best_oks = None, min_oks
        for ann in persons.get(iid, []):
            if ann["id"] in taken:
                continue
            o = float(coco_oks(np.reshape(ann["keypoints"], (-1, 3)), pose[None], ann["area"],
                               sigmas)[0])
            if o >= best_oks:
                best, best_oks = ann, o
        if best is None:
            continue
        taken.add(best["id"])
        gt = np.reshape(best["keypoints"], (-1, 3)).astype(np.float64)
        others = np.array([np.reshape(a["keypoints"], (-1, 3)) for a in persons[iid]
                           if a["id"] != best["id"]]).reshape(-1, len(gt), 3)
        types = classify_joints(pose, gt, others, best["area"], sigmas, counterpart)
        yield MatchedPose(i, pose, gt, float(best["area"]), levels[iid], types)


def error_mix(coco: CocoPersons, results: Sequence[dict[str, Any]], min_oks: float = 0.1
              ) -> dict[str, Any]:
    """The error types of the labeled GT joints of the matched poses of ``results``: counts,
    the shares of each type, and per joint group (face, upper, lower body: JointGroups.body)
    the shares in ERROR_TYPES order, the form of ``posefix.error_mix``."""
    body = JointGroups.from_names(coco.category["keypoints"]).body
    counts = np.zeros((len(GROUP_NAMES), len(ERROR_TYPES)), dtype=np.int64)
    poses = 0
    for m in matched_inputs(coco, results, min_oks):
        poses += 1
        for j in np.flatnonzero(m.types >= 0):
            counts[body[j], m.types[j]] += 1
    total = counts.sum()
    shares = counts.sum(0) / max(total, 1)
    groups = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    return {"matched_poses": poses, "joints": int(total),
            "counts": {t: int(c) for t, c in zip(ERROR_TYPES, counts.sum(0), strict=True)},
            "shares": {t: round(float(v), 4) for t, v in zip(ERROR_TYPES, shares, strict=True)},
            "by_group": {g: [round(float(v), 4) for v in row]
                         for g, row in zip(GROUP_NAMES, groups, strict=True)}}


#: A joint's error changes (closer or farther) only by more than this many pixels: refined
#: coordinates are rounded to 1/1000 px, and a results file may round its inputs.
MIN_MOVE = 0.01


def refinement_analysis(coco: CocoPersons, inputs: Sequence[dict[str, Any]],
                        refined: Sequence[dict[str, Any]], min_oks: float = 0.1
                        ) -> dict[str, Any]:
    """Per labeled GT joint, whether refinement moved the estimate closer to the GT or
    farther (by more than MIN_MOVE px; the rest is unchanged): input poses are matched as
    ``matched_inputs``; counted overall, by the input joint's error type and by the image's
    crowd level."""
    sigmas = coco.sigmas
    rows = []  # (type, level, before distance, after distance, ks before, ks after)
    matched = 0
    for m in matched_inputs(coco, inputs, min_oks):
        matched += 1
        after = np.reshape(refined[m.index]["keypoints"], (-1, 3))
        d_before = np.linalg.norm(m.pose[:, :2] - m.gt[:, :2], axis=1)
        d_after = np.linalg.norm(after[:, :2] - m.gt[:, :2], axis=1)
        for j in np.flatnonzero(m.types >= 0):
            rows.append((ERROR_TYPES[m.types[j]], m.level, d_before[j], d_after[j],
                         float(keypoint_similarity(d_before[j] ** 2, m.area, sigmas[j])),
                         float(keypoint_similarity(d_after[j] ** 2, m.area, sigmas[j]))))

    def summary(sel: list[tuple]) -> dict[str, float | int]:
        if not sel:
            return {"joints": 0}
        arr = np.array([r[2:] for r in sel], dtype=np.float64)
        return {"joints": len(sel),
                "reduced": round(float((arr[:, 1] < arr[:, 0] - MIN_MOVE).mean()), 4),
                "increased": round(float((arr[:, 1] > arr[:, 0] + MIN_MOVE).mean()), 4),
                "ks_before": round(float(arr[:, 2].mean()), 4),
                "ks_after": round(float(arr[:, 3].mean()), 4)}

    return {"matched_poses": matched, "inputs": len(inputs), "overall": summary(rows),
            "by_error_type": {t: summary([r for r in rows if r[0] == t]) for t in ERROR_TYPES},
            "by_crowd_level": {lv: summary([r for r in rows if r[1] == lv])
                               for lv in CROWD_LEVELS}}


def plot_refinement(analyses: Mapping[str, Mapping[str, Any]], path: str | Path) -> None:
    """A PNG of :func:`refinement_analysis` per input (one panel each, e.g. detector and GT
    boxes): per error type of the input joint, the mean keypoint similarity before and after
    refinement, with the joints' count and the shares moved closer / farther."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(analyses), figsize=(5.2 * len(analyses), 3.6),
                             squeeze=False, sharey=True)
    xs = np.arange(len(ERROR_TYPES))
    for ax, (label, analysis) in zip(axes[0], analyses.items(), strict=True):
        rows = [analysis["by_error_type"].get(t, {"joints": 0}) for t in ERROR_TYPES]
        before = [r.get("ks_before", np.nan) for r in rows]
        after = [r.get("ks_after", np.nan) for r in rows]
        ax.bar(xs - 0.2, np.nan_to_num(before), 0.4, label="input")
        ax.bar(xs + 0.2, np.nan_to_num(after), 0.4, label="refined")
        for x, r in zip(xs, rows, strict=True):
            if r["joints"]:
                ax.text(x, 1.02, f"{r['joints']}\n+{r['reduced']:.0%} / -{r['increased']:.0%}",
                        ha="center", va="bottom", fontsize=6)
        ax.set_xticks(xs, ERROR_TYPES)
        ax.set_ylim(0, 1.25)
        ax.set_title(f"PoseFix on {label}: keypoint similarity by error type", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("mean keypoint similarity")
    axes[0][0].legend(fontsize=7, loc="center right")
    fig.text(0.5, 0.005, "above the bars: joints, share moved closer / farther", ha="center",
             fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
