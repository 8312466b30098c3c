"""PoseFix applied to any COCO keypoint results file: crop every input pose as PoseFix at test
time, predict the soft-argmax coordinates (averaged with a flip pass with ``flip_test``; the
``hrnet`` refiner's heatmaps are averaged with the flip pass's and decoded as the pose
models', hintpose.topdown.codec.decode), keep
each instance's score and its per-joint scores (only the coordinates change; PoseFix gives
every joint the instance score, which COCO's metric ignores), and run the per-image OKS-NMS
again on the padded crop areas, since two inputs may have been corrected onto the same person.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from hintpose.config import PosefixParams
from hintpose.data.coco import CocoPersons, validate_keypoint_results
from hintpose.data.transforms import affine_matrix, flip_pairs_from_names, transform_points
from hintpose.io import read_json
from hintpose.models.folder import load_network
from hintpose.models.posefix import PoseFix, PoseFixHRNet, build_posefix, soft_argmax
from hintpose.posefix.synthesis import NETWORK_KEYS, RefineSet
from hintpose.runtime import Runtime, worker_init
from hintpose.topdown.codec import decode
from hintpose.topdown.postprocess import nms_per_image


def config_params(config: dict[str, Any], params: PosefixParams) -> PosefixParams:
    """``params`` with the crop and input settings a model was trained with."""
    return dataclasses.replace(params, **{k: config[k] for k in NETWORK_KEYS if k in config})


def load_model(model_dir: Path, device: torch.device | str = "cpu"
               ) -> tuple[PoseFix | PoseFixHRNet, dict[str, Any]]:
    """The PoseFix folder written by train_posefix: (network in eval mode, config)."""
    return load_network(model_dir, build_posefix, "PoseFix model", "train_posefix", device)


def read_pose_results(path: str | Path, coco: CocoPersons) -> list[dict[str, Any]]:
    """COCO keypoint results from ``path`` checked against the split ``coco`` (see
    hintpose.data.coco.validate_keypoint_results); anything else is a DataError naming the
    file and the entry."""
    return validate_keypoint_results(read_json(path, "keypoint results file"), str(path),
                                     coco.images, coco.category["id"], coco.num_joints,
                                     coco.annotation_file.name)


def _agrees(belief: np.ndarray, dataset: RefineSet, rows: range, stride: int,
            ratio: float) -> np.ndarray:
    """(N, J): where the refiner's output map (``belief``: heatmaps, or softmax
    probabilities) at the input joint's pixel is at least ``ratio`` x its peak: the refiner
    agrees with the input there, so the joint is kept (``posefix.keep_ratio``)."""
    n, j, h, w = belief.shape
    out = np.zeros((n, j), dtype=bool)
    for k, row in enumerate(rows):
        center, size = dataset.crop(row)
        m = affine_matrix(center, size, 0.0, dataset.size)
        kpts = np.reshape(dataset.entries[row]["keypoints"], (-1, 3))[:, :2]
        px = np.rint(transform_points(kpts.astype(np.float64), m) / stride).astype(np.int64)
        x, y = np.clip(px[:, 0], 0, w - 1), np.clip(px[:, 1], 0, h - 1)
        at = belief[k, np.arange(j), y, x]
        out[k] = at >= ratio * belief[k].reshape(j, -1).max(1)
    return out


@dataclass
class Refinement:
    """Refined poses aligned with the input entries (before NMS) and the final results."""

    refined: list[dict[str, Any]]
    results: list[dict[str, Any]]
    stats: dict[str, Any]


@torch.no_grad()
def refine_results(net: PoseFix | PoseFixHRNet, config: dict[str, Any], coco: CocoPersons,
                   entries: Sequence[dict[str, Any]], params: PosefixParams, rt: Runtime,
                   nms_thr: float = 0.9, soft_nms: bool = False, decoder: str = "dark",
                   progress: bool = True) -> Refinement:
    """Refine every entry scoring at least ``params.min_score`` (others pass through
    unchanged), keeping its scores, then OKS-NMS per image (see the module docstring);
    ``decoder`` decodes the ``hrnet`` refiner's heatmaps."""
    start = time.perf_counter()
    params = config_params(config, params)
    todo = [i for i, e in enumerate(entries) if e["score"] >= params.min_score]
    dataset = RefineSet(coco, [entries[i] for i in todo], params)
    perm = list(range(config["num_joints"]))
    for a, b in flip_pairs_from_names(config["keypoint_names"]):
        perm[a], perm[b] = b, a
    width = params.input_width
    coords = np.zeros((len(todo), config["num_joints"], 2))
    agree = np.zeros((len(todo), config["num_joints"]), dtype=bool)
    loader = DataLoader(dataset, batch_size=params.batch_size, shuffle=False,
                        num_workers=params.train.workers, worker_init_fn=worker_init
                        if params.train.workers else None)
    done = 0
    net.eval()
    for image, maps, inverse in tqdm(loader, desc="refine", unit="batch", disable=not progress):
        image = image.to(rt.device).contiguous(memory_format=rt.memory_format)
        maps = maps.to(rt.device).contiguous(memory_format=rt.memory_format)
        with rt.autocast():
            out = net(image, maps).float()
            flipped = (net(image.flip(3), maps.flip(3)[:, perm]).float() if params.flip_test
                       else None)
        hrnet = isinstance(net, PoseFixHRNet)
        if hrnet and flipped is not None:
            out = (out + flipped.flip(3)[:, perm]) / 2
        if params.keep_ratio > 0:  # heatmaps, or the softmax of logits relative to its peak
            belief = out if hrnet else torch.exp(out - out.flatten(2).amax(2)[..., None, None])
            agree[done:done + len(out)] = _agrees(
                belief.cpu().numpy(), dataset, range(done, done + len(out)), net.stride,
                params.keep_ratio)
        if hrnet:
            crops = [dataset.crop(done + k) for k in range(len(out))]
            xy, _ = decode(out.cpu().numpy(), np.array([c for c, _ in crops]),
                           np.array([z for _, z in crops]), decoder, config["sigma"])
            coords[done:done + len(out)] = xy
        else:
            xy = soft_argmax(out) * net.stride
            if flipped is not None:
                back = soft_argmax(flipped)[:, perm] * net.stride
                back[..., 0] = width - 1 - back[..., 0]
                xy = (xy + back) / 2
            for k, (pts, inv) in enumerate(zip(xy.cpu().numpy(), inverse.numpy(), strict=True)):
                coords[done + k] = transform_points(pts.astype(np.float64), inv)
        done += len(out)
    refined = [dict(e) for e in entries]
    areas = np.zeros(len(entries))
    for k, i in enumerate(todo):
        kpts = np.reshape(entries[i]["keypoints"], (-1, 3)).astype(np.float64)
        moved = ~agree[k]  # kept joints stay exactly the input's
        kpts[moved, :2] = np.round(coords[k][moved], 3)
        refined[i]["keypoints"] = kpts.ravel().tolist()
        areas[i] = float(np.prod(dataset.crop(k)[1]))
    for i in set(range(len(entries))) - set(todo):
        kpts = np.reshape(entries[i]["keypoints"], (-1, 3))
        span = kpts[:, :2].max(0) - kpts[:, :2].min(0)
        areas[i] = float(np.prod(np.maximum(span, 1.0)))
    kpts = np.array([np.reshape(e["keypoints"], (-1, 3)) for e in refined]).reshape(
        len(refined), config["num_joints"], 3)
    scores = np.array([e["score"] for e in refined], dtype=np.float64)
    kept = nms_per_image(kpts, scores, areas, [e["image_id"] for e in refined], nms_thr,
                         soft_nms, coco.sigmas)
    results = [refined[i] for i in kept]
    stats = {"inputs": len(entries), "refined": len(todo), "results": len(results),
             "joints_kept": int(agree.sum()),
             "seconds": round(time.perf_counter() - start, 2), "flip_test": params.flip_test}
    return Refinement(refined, results, stats)
