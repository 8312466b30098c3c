"""Instance cues per detection box: MultiPoseNet heatmap peaks, oracle GT cues, cue quality.

MultiPoseNet cues (the report's evaluation-time cues): image-level maps of every image with a
box (averaged with those of the mirrored image), one heatmap per image (a chosen joint's, or
the max over joints), local maxima by 3x3 max-pool suppression above ``threshold`` with a
sub-pixel (parabola) refinement, mapped to image pixels, then thinned greedily, best first,
to points at least ``min_distance`` pixels apart. A box's cues are the peaks of its image that
lie inside it (edges included), best first, at most ``max_per_box``: the same rule as
``hintpose.topdown.boxes.cues_inside``, which applies it to boxes the stage did not see.

Oracle cues (an upper bound): one per GT person (non-crowd, labeled) with a labeled joint
inside the box: of its joints inside the box (visible ones if any, else hidden ones) the one
nearest their centroid, scored by the IoU of the person's box with the detection.

Cue files are aligned one to one with the detections: entry i is
``{"image_id", "bbox", "score", "cues": [[x, y, score], ...]}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from hintpose.bottomup.targets import BottomUpDataset, build_codec, make_loader, person_mask
from hintpose.config import CuesParams
from hintpose.data.coco import CocoPersons
from hintpose.data.crowd import box_iou, oracle_point
from hintpose.data.transforms import flip_heatmaps_back, flip_pairs_from_names, transform_points
from hintpose.errors import ConfigError
from hintpose.models.folder import load_network
from hintpose.models.multiposenet import MultiPoseNet
from hintpose.runtime import Runtime

#: A GT person is "in" a box when at least this fraction of its box lies inside the box.
CONTAIN_FRACTION = 0.5

Cues = list[list[list[float]]]  # per box: [[x, y, score], ...]


def load_model(model_dir: Path, device: str | torch.device = "cpu"
               ) -> tuple[MultiPoseNet, dict[str, Any]]:
    """The MultiPoseNet folder written by train_multiposenet: (net in eval mode, config)."""
    return load_network(model_dir, MultiPoseNet.from_config, "MultiPoseNet",
                        "train_multiposenet", device)


# --------------------------------------------------------------------------- peaks


def resolve_joint(name: str, keypoint_names: Sequence[str]) -> int | None:
    """``cues.joint`` -> a joint channel, or None for the max over joints."""
    if name == "max":
        return None
    if name not in keypoint_names:
        raise ConfigError(f"cues.joint must be 'max' or a keypoint name of the model "
                          f"({', '.join(keypoint_names)}), got {name!r}")
    return list(keypoint_names).index(name)


def _parabola_offset(lo: torch.Tensor, mid: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Where a parabola through (-1, lo), (0, mid), (1, hi) peaks, within half a pixel."""
    curv = 2 * mid - lo - hi
    safe = torch.where(curv > 0, curv, torch.ones_like(curv))
    return torch.where(curv > 0, 0.5 * (hi - lo) / safe, 0).clamp(-0.5, 0.5)


def local_peaks(heat: torch.Tensor, threshold: float) -> list[np.ndarray]:
    """heat (B, h, w) -> per map the local maxima (3x3 max-pool suppression) whose value is
    above ``threshold``, as (K, 3) float64 rows (x, y, value) in heatmap pixels, best first.
    Positions move by a parabola fit through each axis's neighbours (at most half a pixel)."""
    heat = heat.float()
    pooled = F.max_pool2d(heat[:, None], 3, stride=1, padding=1)[:, 0]
    keep = (heat == pooled) & (heat > threshold)
    padded = F.pad(heat[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    out = []
    for b in range(heat.shape[0]):
        ys, xs = torch.nonzero(keep[b], as_tuple=True)
        c = heat[b, ys, xs].double()
        p = padded[b].double()
        left, right = p[ys + 1, xs], p[ys + 1, xs + 2]
        up, down = p[ys, xs + 1], p[ys + 2, xs + 1]
        pts = torch.stack([xs.double() + _parabola_offset(left, c, right),
                           ys.double() + _parabola_offset(up, c, down), c], 1).numpy()
        out.append(pts[np.argsort(-pts[:, 2], kind="stable")])
    return out


def thin_peaks(points: np.ndarray, min_distance: float) -> np.ndarray:
    """Greedy, best first: drop a point closer than ``min_distance`` to a kept one. Input
    (K, 3) rows (x, y, score) in any order; output best first."""
    points = points[np.argsort(-points[:, 2], kind="stable")]
    if min_distance <= 0 or len(points) < 2:
        return points
    kept: list[int] = []
    for i in range(len(points)):
        if not kept or np.min(np.hypot(*(points[kept, :2] - points[i, :2]).T)) >= min_distance:
            kept.append(i)
    return points[kept]


def peak_map(maps: torch.Tensor, joint: int | None, num_joints: int) -> torch.Tensor:
    """maps (B, J + 1, h, w) -> the heatmap (B, h, w) peaks come from."""
    return maps[:, :num_joints].amax(1) if joint is None else maps[:, joint]


def box_cues(peaks: np.ndarray, bbox: Sequence[float], max_per_box: int) -> list[list[float]]:
    """Rows (x, y, score) of ``peaks`` (best first) inside the COCO box, at most
    ``max_per_box``."""
    x, y, w, h = bbox
    inside = ((peaks[:, 0] >= x) & (peaks[:, 0] <= x + w) & (peaks[:, 1] >= y)
              & (peaks[:, 1] <= y + h))
    return [[float(v) for v in row] for row in peaks[inside][:max_per_box]]


# --------------------------------------------------------------------------- MultiPoseNet cues


@torch.no_grad()
def predict_maps(
    net: MultiPoseNet, config: dict[str, Any], coco: CocoPersons, image_ids: Sequence[int],
    rt: Runtime, batch_size: int, flip: bool = True, workers: int = 0, progress: bool = True,
) -> Iterator[tuple[list[int], torch.Tensor, np.ndarray]]:
    """Image-level maps of ``image_ids``, batch by batch: (image ids, maps (B, J + 1, h, w)
    fp32 on the CPU, heatmap -> image matrices (B, 2, 3)). With ``flip`` the maps are the
    average with those of the mirrored input, mirrored back."""
    codec = build_codec(config)
    dataset = BottomUpDataset(coco, image_ids, codec, targets=False)
    pairs = flip_pairs_from_names(config["keypoint_names"])
    net.eval()
    loader = make_loader(dataset, range(len(dataset)), batch_size, workers)
    for image, _, _, meta in tqdm(loader, desc="maps", unit="batch", disable=not progress):
        image = image.to(rt.device).contiguous(memory_format=rt.memory_format)
        with rt.autocast():
            maps = net(image)[0].float()
            if flip:
                mirrored = net(image.flip(3))[0].float()
                maps = (maps + flip_heatmaps_back(mirrored, pairs)) * 0.5
        inverse = np.stack([codec.heatmap_matrix(c, s, inverse=True)
                            for c, s in zip(meta["center"].numpy(), meta["size"].numpy(),
                                            strict=True)])
        yield [int(i) for i in meta["image_id"]], maps.cpu(), inverse


def maps_to_peaks(maps: torch.Tensor, inverse: np.ndarray, joint: int | None, num_joints: int,
                  threshold: float, min_distance: float) -> list[np.ndarray]:
    """Per image of a batch: peaks (K, 3) (x, y, score) in image pixels, best first, at least
    ``min_distance`` apart."""
    peaks = local_peaks(peak_map(maps, joint, num_joints), threshold)
    out = []
    for pts, m in zip(peaks, inverse, strict=True):
        img = pts.copy()
        img[:, :2] = transform_points(pts[:, :2], m)
        out.append(thin_peaks(img, min_distance))
    return out


def multiposenet_cues(
    net: MultiPoseNet, config: dict[str, Any], coco: CocoPersons,
    boxes: Sequence[dict[str, Any]], params: CuesParams, rt: Runtime, progress: bool = True,
) -> Cues:
    """Cues of every box from the peaks of its image's maps (see the module docstring)."""
    joint = resolve_joint(params.joint, config["keypoint_names"])
    image_ids = sorted({int(b["image_id"]) for b in boxes})
    peaks: dict[int, np.ndarray] = {}
    for ids, maps, inverse in predict_maps(net, config, coco, image_ids, rt, params.batch_size,
                                           params.flip_test, progress=progress):
        found = maps_to_peaks(maps, inverse, joint, int(config["num_joints"]), params.threshold,
                              params.min_distance)
        peaks.update(zip(ids, found, strict=True))
    return [box_cues(peaks[int(b["image_id"])], b["bbox"], params.max_per_box) for b in boxes]


# --------------------------------------------------------------------------- oracle cues


def labeled_persons(coco: CocoPersons, image_id: int) -> list[dict[str, Any]]:
    """GT persons of an image that pose models are trained and evaluated on."""
    return [a for a in coco.annotations_of(image_id)
            if not a.get("iscrowd", 0) and a["num_keypoints"] > 0]


def _intersection(a: Sequence[float], b: Sequence[float]) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)


def oracle_cues(coco: CocoPersons, boxes: Sequence[dict[str, Any]], max_per_box: int) -> Cues:
    """One cue per GT person overlapping each box (see the module docstring), best IoU first."""
    out = []
    for box in boxes:
        found = []
        for ann in labeled_persons(coco, int(box["image_id"])):
            iou = float(box_iou(ann["bbox"], [box["bbox"]])[0])
            point = oracle_point(ann["keypoints"], box["bbox"]) if iou > 0 else None
            if point is not None:
                found.append([point[0], point[1], iou])
        found.sort(key=lambda c: -c[2])
        out.append(found[:max_per_box])
    return out


# --------------------------------------------------------------------------- quality, files


def _on_mask(mask: np.ndarray, x: float, y: float) -> bool:
    h, w = mask.shape
    px, py = int(round(x)), int(round(y))
    return 0 <= px < w and 0 <= py < h and bool(mask[py, px])


def cue_quality(coco: CocoPersons, boxes: Sequence[dict[str, Any]], cues: Cues) -> dict[str, Any]:
    """How well cues pick persons, over all boxes:

    - ``mean_cues_per_box``; ``center_fallback_fraction``: boxes without a cue (inference
      then uses the box center);
    - ``multi_person_recall``: over boxes holding more than one GT person (at least
      CONTAIN_FRACTION of the person's box inside), the fraction of those persons with at
      least one of the box's cues on their mask (``multi_person_boxes``, ``..._persons``);
    - ``recall``: the same over every box holding a person;
    - ``cues_on_a_person``: the fraction of cues on some GT person's mask.
    """
    if len(cues) != len(boxes):
        raise ValueError(f"cue_quality: {len(cues)} cue lists for {len(boxes)} boxes")
    masks: dict[int, list[tuple[dict[str, Any], np.ndarray]]] = {}
    n_cues = fallbacks = on_person = 0
    multi_boxes = multi_persons = multi_hit = all_persons = all_hit = 0
    for box, points in zip(boxes, cues, strict=True):
        iid = int(box["image_id"])
        if iid not in masks:
            img = coco.images[iid]
            masks[iid] = [(a, person_mask(a, img["height"], img["width"]))
                          for a in coco.annotations_of(iid) if not a.get("iscrowd", 0)]
        n_cues += len(points)
        fallbacks += not points
        on_person += sum(any(_on_mask(m, x, y) for _, m in masks[iid]) for x, y, _ in points)
        held = [m for a, m in masks[iid] if a["num_keypoints"] > 0 and a["bbox"][2] * a["bbox"][3]
                > 0 and _intersection(a["bbox"], box["bbox"])
                >= CONTAIN_FRACTION * a["bbox"][2] * a["bbox"][3]]
        hits = sum(any(_on_mask(m, x, y) for x, y, _ in points) for m in held)
        all_persons, all_hit = all_persons + len(held), all_hit + hits
        if len(held) > 1:
            multi_boxes, multi_persons, multi_hit = (multi_boxes + 1, multi_persons + len(held),
                                                     multi_hit + hits)

    def ratio(a: int, b: int) -> float:
        return round(a / b, 4) if b else 0.0

    return {
        "boxes": len(boxes),
        "mean_cues_per_box": ratio(n_cues, len(boxes)),
        "center_fallback_fraction": ratio(fallbacks, len(boxes)),
        "multi_person_boxes": multi_boxes,
        "multi_person_box_persons": multi_persons,
        "multi_person_recall": ratio(multi_hit, multi_persons),
        "recall": ratio(all_hit, all_persons),
        "cues_on_a_person": ratio(on_person, n_cues),
    }


def cue_records(boxes: Sequence[dict[str, Any]], cues: Cues) -> list[dict[str, Any]]:
    """The cue file's entries: each box (image_id, bbox, score as given) with its cues
    (pixels rounded to 0.01, scores to 1e-4)."""
    if len(cues) != len(boxes):
        raise ValueError(f"cue_records: {len(cues)} cue lists for {len(boxes)} boxes")
    return [{"image_id": int(b["image_id"]), "bbox": [float(v) for v in b["bbox"]],
             "score": float(b["score"]),
             "cues": [[round(float(x), 2), round(float(y), 2), round(float(s), 4)]
                      for x, y, s in points]}
            for b, points in zip(boxes, cues, strict=True)]
