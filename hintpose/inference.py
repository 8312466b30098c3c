"""Top-down inference: instances from boxes (and cues), flip-tested heatmaps, COCO results.

Heatmaps of every instance go into one float16 array on disk (a memory map filled batch by
batch) next to an index of the instances, so the ensemble can stream them in chunks. Turning
heatmaps into poses (decode -> rescoring -> per-image OKS-NMS) is ``heatmaps_to_results``,
shared by single models and the ensemble.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from hintpose.codec import decode
from hintpose.data.coco import CocoPersons, clip_box
from hintpose.data.topdown import Instance, TopDownDataset, flip_heatmaps_back
from hintpose.errors import DataError
from hintpose.postprocess import oks_nms, rescore, soft_oks_nms


@dataclass
class InstanceSet:
    """Instances to run, with counters a user should see (boxes dropped, cue fallbacks)."""

    instances: list[Instance]
    box_index: np.ndarray  # (N,) which input box each instance came from
    stats: dict[str, int]


def gt_box_instances(coco: CocoPersons) -> InstanceSet:
    """One instance per GT person HRNet evaluates with GT boxes (labeled, not crowd), box
    score 1, the cue left to the caller (``with_cues``)."""
    insts = [Instance(a["image_id"], tuple(a["clean_bbox"]), 1.0)
             for a in coco.training_persons()]
    return InstanceSet(insts, np.arange(len(insts)), {"boxes": len(insts)})


def box_instances(
    coco: CocoPersons, boxes: Sequence[dict[str, Any]], source: str, min_size: float,
    score_thr: float, use_cues: bool,
) -> InstanceSet:
    """Instances from COCO-style box records (``image_id``, ``bbox``, ``score``, optional
    ``cues``: [[x, y, score], ...]). Boxes smaller than ``min_size`` on either side or scoring
    below ``score_thr`` are dropped. With ``use_cues`` a box yields one instance per cue, or
    one at its center when it has none (counted as a fallback)."""
    insts, index = [], []
    stats = {"boxes_in": len(boxes), "boxes": 0, "dropped_small": 0, "dropped_score": 0,
             "cue_fallbacks": 0}
    for i, rec in enumerate(boxes):
        if not isinstance(rec, dict) or rec.get("image_id") not in coco.images:
            got = rec.get("image_id") if isinstance(rec, dict) else rec
            raise DataError(f"{source}: entry {i} refers to unknown image id {got!r}")
        bbox, score = rec.get("bbox"), rec.get("score", 1.0)
        if not (isinstance(bbox, list) and len(bbox) == 4):
            raise DataError(f"{source}: entry {i} needs a bbox [x, y, w, h], got {bbox!r}")
        if bbox[2] < min_size or bbox[3] < min_size:
            stats["dropped_small"] += 1
            continue
        if score < score_thr:
            stats["dropped_score"] += 1
            continue
        img = coco.images[rec["image_id"]]
        box = clip_box(bbox, img["width"], img["height"])
        if box is None:
            stats["dropped_small"] += 1
            continue
        stats["boxes"] += 1
        cues = (rec.get("cues") or []) if use_cues else []
        if use_cues and not cues:
            stats["cue_fallbacks"] += 1
        for cue in cues or [None]:
            point = None if cue is None else (float(cue[0]), float(cue[1]))
            insts.append(Instance(rec["image_id"], tuple(box), float(score), cue=point))
            index.append(i)
    return InstanceSet(insts, np.asarray(index, dtype=np.int64), stats)


@torch.no_grad()
def predict_heatmaps(
    model: torch.nn.Module, dataset: TopDownDataset, out_file: Path, batch_size: int,
    device: torch.device, bf16: bool, channels_last: bool, workers: int = 0,
    use_cue: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` (returning a list of hop outputs; the last is used) with HRNet's flip
    test over ``dataset`` and write the averaged heatmaps (N, J, h, w) as float16 to
    ``out_file`` (.npy). Returns the crop centers and sizes (N, 2) in image pixels."""
    n = len(dataset)
    w, h = dataset.codec.heatmap_size
    out = np.lib.format.open_memmap(out_file, mode="w+", dtype=np.float16,
                                    shape=(n, dataset.coco.num_joints, h, w))
    centers, sizes = np.zeros((n, 2), np.float32), np.zeros((n, 2), np.float32)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    model.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for image, _, _, cue, meta in tqdm(loader, desc="infer", unit="batch"):
        image = image.to(device).contiguous(memory_format=fmt)
        cue = cue.to(device).contiguous(memory_format=fmt) if use_cue else None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            plain = model(image, cue)[-1].float()
            mirrored = model(image.flip(3), None if cue is None else cue.flip(3))[-1].float()
        heat = (plain + flip_heatmaps_back(mirrored, dataset.flip_pairs)) * 0.5
        idx = meta["index"].numpy()
        out[idx] = heat.cpu().numpy().astype(np.float16)
        centers[idx], sizes[idx] = meta["center"].numpy(), meta["size"].numpy()
    out.flush()
    return centers, sizes


def heatmaps_to_results(
    read_chunk: Callable[[slice], np.ndarray], n: int, centers: np.ndarray, sizes: np.ndarray,
    image_ids: np.ndarray, box_scores: np.ndarray, category_id: int = 1, chunk: int = 4096,
    in_vis_thr: float = 0.2, nms_thr: float = 0.9, soft_nms: bool = False,
    sigmas: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Decode heatmaps (read ``chunk`` instances at a time), rescore (box score x mean
    keypoint score above ``in_vis_thr``), OKS-NMS per image on the padded crop area, and
    return COCO keypoint results."""
    coords, maxvals = [], []
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        c, m = decode(read_chunk(sl).astype(np.float32), centers[sl], sizes[sl])
        coords.append(c)
        maxvals.append(m)
    if n == 0:
        return []
    kpts = np.concatenate([np.concatenate(coords), np.concatenate(maxvals)], axis=2)
    scores = rescore(kpts, box_scores, in_vis_thr)
    areas = sizes.astype(np.float64).prod(axis=1)
    by_image: dict[int, list[int]] = defaultdict(list)
    for i, iid in enumerate(image_ids.tolist()):
        by_image[iid].append(i)
    nms = soft_oks_nms if soft_nms else oks_nms
    results = []
    for iid in sorted(by_image):
        idx = np.asarray(by_image[iid])
        for k in nms(kpts[idx], scores[idx], areas[idx], nms_thr, sigmas):
            j = idx[k]
            results.append({"image_id": int(iid), "category_id": category_id,
                            "keypoints": np.round(kpts[j], 3).ravel().tolist(),
                            "score": float(scores[j])})
    return results
