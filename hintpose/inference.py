"""Top-down inference: instances from boxes (and cues), flip-tested heatmaps, COCO results.

Heatmaps of every instance go into one float16 array on disk (a memory map filled batch by
batch) next to an index of the instances, so the ensemble can stream them in chunks. Turning
heatmaps into poses (decode -> rescoring -> per-image OKS-NMS) is ``heatmaps_to_results``,
shared by single models and the ensemble.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from hintpose.codec import decode
from hintpose.config import EvalParams, PoseDataParams
from hintpose.data.coco import CocoPersons, clip_box, read_json
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


def process_rank() -> tuple[int, int]:
    """(rank, world size) of this process in its process group; (0, 1) outside one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def predict_heatmaps(
    model: torch.nn.Module, dataset: TopDownDataset, out_file: Path, batch_size: int,
    device: torch.device, bf16: bool, channels_last: bool, workers: int = 0,
    use_cue: bool = True, flip: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` (returning a list of hop outputs; the last is used) with HRNet's flip
    test (unless ``flip`` is false) over ``dataset`` and write the averaged heatmaps
    (N, J, h, w) as float16 to ``out_file`` (.npy). Returns the crop centers and sizes (N, 2)
    in image pixels.

    Inside a process group every rank must call this with the same arguments (``out_file``
    on a file system they share): each predicts one contiguous share of the instances into
    the same file, and all return once the whole file is written."""
    n = len(dataset)
    w, h = dataset.codec.heatmap_size
    rank, world = process_rank()
    if rank == 0:
        out = np.lib.format.open_memmap(out_file, mode="w+", dtype=np.float16,
                                        shape=(n, dataset.coco.num_joints, h, w))
    if world > 1:
        dist.barrier()
    if rank > 0:
        out = np.load(out_file, mmap_mode="r+")
    centers, sizes = np.zeros((n, 2), np.float32), np.zeros((n, 2), np.float32)
    share = Subset(dataset, range(n * rank // world, n * (rank + 1) // world))
    loader = DataLoader(share, batch_size=batch_size, shuffle=False, num_workers=workers)
    model.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for image, _, _, cue, meta in tqdm(loader, desc="infer", unit="batch", disable=rank > 0):
        image = image.to(device).contiguous(memory_format=fmt)
        cue = cue.to(device).contiguous(memory_format=fmt) if use_cue else None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            heat = model(image, cue)[-1].float()
            mirrored = (model(image.flip(3), None if cue is None else cue.flip(3))[-1].float()
                        if flip else None)
        if mirrored is not None:
            heat = (heat + flip_heatmaps_back(mirrored, dataset.flip_pairs)) * 0.5
        idx = meta["index"].numpy()
        out[idx] = heat.cpu().numpy().astype(np.float16)
        centers[idx], sizes[idx] = meta["center"].numpy(), meta["size"].numpy()
    out.flush()
    if world > 1:  # every rank filled only its own rows (zeros elsewhere): the sum joins them
        boxes = torch.from_numpy(np.concatenate([centers, sizes], axis=1)).to(device)
        dist.all_reduce(boxes)
        joined = boxes.cpu().numpy()
        centers, sizes = joined[:, :2], joined[:, 2:]
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


# --------------------------------------------------------------------------- box and cue files


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def read_boxes(path: str | Path, coco: CocoPersons) -> list[dict[str, Any]]:
    """Person boxes from a COCO results file (a list of ``image_id``, ``category_id``,
    ``bbox`` [x, y, w, h], ``score``), checked against the split ``coco``. Anything else
    (not a list, an unknown image id, another category, a bbox that is not 4 finite numbers
    with w, h >= 0, a missing score) is a DataError naming the file and the entry."""
    path = Path(path)
    data = read_json(path, "detections file")
    if not isinstance(data, list):
        raise DataError(f"{path}: detections must be a JSON list of {{image_id, bbox, score}} "
                        f"records, got a {type(data).__name__}")
    category = coco.category["id"]
    boxes = []
    for i, rec in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(rec, dict):
            raise DataError(f"{where} is not a JSON object: {str(rec)[:80]}")
        iid = rec.get("image_id")
        if isinstance(iid, bool) or not isinstance(iid, int) or iid not in coco.images:
            raise DataError(f"{where} refers to unknown image id {iid!r} (not in "
                            f"{coco.annotation_file.name})")
        if rec.get("category_id", category) != category:
            raise DataError(f"{where} has category_id {rec['category_id']!r}; only persons "
                            f"(category {category}) are expected")
        bbox = rec.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
            raise DataError(f"{where} needs a bbox of 4 finite numbers [x, y, w, h], got "
                            f"{bbox!r}")
        if bbox[2] < 0 or bbox[3] < 0:
            raise DataError(f"{where} has a negative box size {bbox!r}")
        if not _is_number(rec.get("score")):
            raise DataError(f"{where} needs a finite number score, got {rec.get('score')!r}")
        boxes.append({"image_id": iid, "bbox": [float(v) for v in bbox],
                      "score": float(rec["score"])})
    return boxes


def read_cues(path: str | Path, boxes: Sequence[dict[str, Any]],
              boxes_source: str) -> list[list[list[float]]]:
    """Instance cues from a cues file aligned one to one with ``boxes`` (the detections it
    was made from): entry i is ``{"image_id", "bbox", "score", "cues": [[x, y, score], ...]}``
    for box i. Returns the cue lists; a misaligned or malformed file is a DataError naming the
    entry."""
    path = Path(path)
    data = read_json(path, "cues file")
    if not isinstance(data, list):
        raise DataError(f"{path}: cues must be a JSON list of {{image_id, bbox, score, cues}} "
                        f"records, got a {type(data).__name__}")
    if len(data) != len(boxes):
        raise DataError(f"{path}: {len(data)} entries but {boxes_source} has {len(boxes)} "
                        "boxes (a cues file is aligned one to one with its detections)")
    cues = []
    for i, (rec, box) in enumerate(zip(data, boxes, strict=True)):
        where = f"{path}: entry {i}"
        if not isinstance(rec, dict):
            raise DataError(f"{where} is not a JSON object: {str(rec)[:80]}")
        bbox = rec.get("bbox")
        same = (rec.get("image_id") == box["image_id"] and isinstance(bbox, list)
                and len(bbox) == 4 and all(map(_is_number, bbox))
                and max(abs(a - b) for a, b in zip(bbox, box["bbox"], strict=True)) < 1e-2)
        if not same:
            raise DataError(f"{where} (image {rec.get('image_id')!r}, bbox {bbox!r}) does not "
                            f"match box {i} of {boxes_source} (image {box['image_id']}, bbox "
                            f"{box['bbox']})")
        points = rec.get("cues")
        if not (isinstance(points, list) and all(
                isinstance(p, list) and len(p) == 3 and all(map(_is_number, p))
                for p in points)):
            raise DataError(f"{where} needs cues as a list of [x, y, score], got "
                            f"{str(points)[:80]}")
        cues.append([[float(v) for v in p] for p in points])
    return cues


def gt_boxes(coco: CocoPersons) -> list[dict[str, Any]]:
    """Box records (score 1) of the GT persons HRNet evaluates with GT boxes: not crowd, with
    labeled joints (``box_instances`` clips them as training does)."""
    return [{"image_id": a["image_id"], "bbox": [float(v) for v in a["bbox"]], "score": 1.0}
            for a in coco.training_persons()]


def cues_inside(boxes: Sequence[dict[str, Any]],
                cue_records: Sequence[dict[str, Any]]) -> list[list[list[float]]]:
    """For each box, the cue points of its image (pooled over every record of
    ``cue_records``, duplicates merged) that lie inside the box, best score first: the cue
    stage's rule (peaks inside a box) applied to boxes it did not see, such as GT boxes."""
    pooled: dict[int, dict[tuple[float, float], float]] = defaultdict(dict)
    for rec in cue_records:
        points = pooled[rec["image_id"]]
        for x, y, score in rec.get("cues") or []:
            key = (round(float(x), 2), round(float(y), 2))
            points[key] = max(points.get(key, score), score)
    out = []
    for box in boxes:
        x, y, w, h = box["bbox"]
        inside = [(-s, px, py) for (px, py), s in pooled.get(box["image_id"], {}).items()
                  if x <= px <= x + w and y <= py <= y + h]
        out.append([[px, py, -s] for s, px, py in sorted(inside)])
    return out


def with_cues(boxes: Sequence[dict[str, Any]],
              cues: Sequence[Sequence[Sequence[float]]]) -> list[dict[str, Any]]:
    """Box records with their ``cues`` lists attached (``cues`` aligned with ``boxes``)."""
    return [{**box, "cues": [list(c) for c in cue]}
            for box, cue in zip(boxes, cues, strict=True)]


# --------------------------------------------------------------------------- one inference run

#: Columns of an instance index: the source box (its position in the box list, clipped box,
#: score), the cue (its position in the box's cue list and the point; -1 and NaN when the
#: model takes no cue or the box had none, so the crop center served as cue) and the crop.
INDEX_COLUMNS = ("image_id", "box_index", "cue_index", "box_x", "box_y", "box_w", "box_h",
                 "box_score", "cue_x", "cue_y", "center_x", "center_y", "size_w", "size_h")


def inference_files(folder: str | Path, boxes: str) -> dict[str, Path]:
    """Where an ``infer`` output folder keeps the heatmaps (.npy, float16 (N, J, h, w)), the
    instance index (.csv, INDEX_COLUMNS, row i = heatmap i) and the COCO results of a box
    mode (``det`` or ``gt``)."""
    folder = Path(folder)
    return {"heatmaps": folder / f"heatmaps_{boxes}.npy",
            "index": folder / f"instances_{boxes}.csv",
            "results": folder / f"results_{boxes}.json"}


def inference_data_params(config: dict[str, Any]) -> PoseDataParams:
    """The crop and cue settings a model was trained with (from its ``model.json``)."""
    keys = ("input_width", "input_height", "sigma", "cue_sigma", "box_padding")
    return PoseDataParams(**{k: config[k] for k in keys})


def instance_index(instset: InstanceSet, centers: np.ndarray, sizes: np.ndarray) -> pd.DataFrame:
    """The index of ``instset`` (INDEX_COLUMNS), one row per instance in heatmap order."""
    rows, cue_count = [], defaultdict(int)
    for inst, b in zip(instset.instances, instset.box_index.tolist(), strict=True):
        if inst.cue is None:
            cue_index, cue = -1, (np.nan, np.nan)
        else:
            cue_index, cue = cue_count[b], inst.cue
            cue_count[b] += 1
        rows.append((inst.image_id, b, cue_index, *inst.bbox, inst.score, *cue))
    frame = pd.DataFrame(rows, columns=list(INDEX_COLUMNS[:10]))
    frame = frame.astype({"image_id": np.int64, "box_index": np.int64, "cue_index": np.int64})
    crops = np.concatenate([centers, sizes], axis=1).reshape(-1, 4).astype(np.float64)
    frame[list(INDEX_COLUMNS[10:])] = crops
    return frame


def read_instance_index(path: str | Path) -> pd.DataFrame:
    """Read an instance index written by the ``infer`` stage; other columns are a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: instance index not found (run the infer stage)")
    frame = pd.read_csv(path)
    if tuple(frame.columns) != INDEX_COLUMNS:
        raise DataError(f"{path}: expected the columns {', '.join(INDEX_COLUMNS)}, got "
                        f"{', '.join(map(str, frame.columns))}")
    return frame


@dataclass
class InferenceRun:
    """What one model on one box list produced (the heatmaps are in the given file)."""

    index: pd.DataFrame
    results: list[dict[str, Any]]
    stats: dict[str, float]


def run_inference(
    model: torch.nn.Module, config: dict[str, Any], coco: CocoPersons,
    boxes: Sequence[dict[str, Any]], source: str, heatmap_file: Path, params: EvalParams,
    device: torch.device, bf16: bool, channels_last: bool, filter_boxes: bool = True,
) -> InferenceRun:
    """Run ``model`` (with its ``model.json`` config) on ``boxes`` (records as
    ``box_instances`` takes; with ``filter_boxes``, the size and score thresholds of
    ``params`` apply): flip-tested heatmaps to ``heatmap_file``, then decode, rescoring and
    per-image OKS-NMS into COCO results. Inside a process group every rank predicts its
    share, and only rank 0 decodes: the others return an empty run."""
    use_cue = bool(config["instance_cue"])
    min_size, thr = (params.min_box_size, params.score_thr) if filter_boxes else (0.0, 0.0)
    instset = box_instances(coco, boxes, source, min_size, thr, use_cues=use_cue)
    dataset = TopDownDataset(coco, instset.instances, inference_data_params(config), False)
    start = time.perf_counter()
    centers, sizes = predict_heatmaps(model, dataset, heatmap_file, params.batch_size, device,
                                      bf16, channels_last, params.workers, use_cue,
                                      params.flip_test)
    seconds = time.perf_counter() - start
    if process_rank()[0] > 0:  # rank 0 decodes and writes; the file may move once it has
        return InferenceRun(pd.DataFrame(columns=list(INDEX_COLUMNS)), [], {})
    index = instance_index(instset, centers, sizes)
    heat = np.load(heatmap_file, mmap_mode="r")
    results = heatmaps_to_results(
        lambda sl: heat[sl], len(index), centers, sizes, index["image_id"].to_numpy(),
        index["box_score"].to_numpy(), coco.category["id"], in_vis_thr=params.in_vis_thr,
        nms_thr=params.nms_thr, soft_nms=params.soft_nms)
    stats = {**instset.stats, "instances": len(index), "results": len(results),
             "seconds": round(seconds, 2),
             "instances_per_second": round(len(index) / max(seconds, 1e-9), 2)}
    return InferenceRun(index, results, stats)
