"""Top-down inference: heatmaps of every (box, cue) instance, and heatmaps -> COCO results.

Heatmaps of every instance go into one float16 array on disk (a memory map filled batch by
batch) next to an index of the instances, so the ensemble can stream them in chunks. Turning
heatmaps into poses (decode -> rescoring -> per-image OKS-NMS) is
``hintpose.topdown.postprocess.heatmaps_to_results``, shared by single models and the
ensemble. The flip test is ``eval.flip_test`` (off in the default).
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from hintpose.config import EvalParams
from hintpose.data.coco import CocoPersons, clip_box
from hintpose.data.transforms import flip_heatmaps_back
from hintpose.errors import DataError
from hintpose.io import open_npy
from hintpose.models.folder import load_network
from hintpose.models.hintpose import HintPose
from hintpose.runtime import Runtime, current_dist
from hintpose.topdown.outputs import INDEX_COLUMNS, InferenceRun
from hintpose.topdown.postprocess import PostSettings, decode_heatmaps, poses_to_results
from hintpose.topdown.samples import Instance, TopDownDataset
from hintpose.topdown.spec import ModelSpec


@dataclass(frozen=True)
class PredictSettings:
    """How heatmaps are predicted and decoded: batch size, loader workers, HRNet's flip test
    and the decoder (hintpose.topdown.codec.DECODERS)."""

    batch_size: int = 32
    workers: int = 0
    flip_test: bool = False
    decoder: str = "hrnet"

    @classmethod
    def of(cls, ev: EvalParams) -> PredictSettings:
        """The ``eval`` section's."""
        return cls(ev.batch_size, ev.workers, ev.flip_test, ev.decoder)


@torch.no_grad()
def predict_heatmaps(
    model: torch.nn.Module, dataset: TopDownDataset, out_file: Path, settings: PredictSettings,
    rt: Runtime, hop_files: Sequence[Path] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` (returning a list of hop outputs; the last is used; its cue, when the
    dataset's cue type has one) with HRNet's flip test (``settings.flip_test``) over
    ``dataset`` and write the averaged heatmaps (N, J, h, w) as float16 to ``out_file``
    (.npy); ``hop_files`` get those of the earlier hops (hop 1 first) the same way. Returns
    the crop centers and sizes (N, 2) in image pixels.

    Inside a process group every rank must call this with the same arguments (``out_file``
    on a file system they share): each predicts one contiguous share of the instances into
    the same file, and all return once the whole file is written."""
    n = len(dataset)
    w, h = dataset.codec.heatmap_size
    info = current_dist()
    rank, world = info.rank, info.world_size
    files = [*hop_files, out_file]
    if rank == 0:
        for file in files:  # allocated on disk now: a full disk is an error naming the file
            open_npy(file, (n, dataset.coco.num_joints, h, w), np.float16).flush()
    if world > 1:
        dist.barrier()
    outs = [np.load(file, mmap_mode="r+") for file in files]
    centers, sizes = np.zeros((n, 2), np.float32), np.zeros((n, 2), np.float32)
    share = Subset(dataset, range(n * rank // world, n * (rank + 1) // world))
    loader = DataLoader(share, batch_size=settings.batch_size, shuffle=False,
                        num_workers=settings.workers)
    model.eval()
    for batch in tqdm(loader, desc="infer", unit="batch", disable=rank > 0):
        image = rt.images(batch["image"])
        cue = rt.images(batch["cue"]) if "cue" in batch else None
        with rt.autocast():
            hops = model(image, cue)[-len(files):]
            mirrored = (model(image.flip(3), None if cue is None else dataset.cue.flip(cue))
                        [-len(files):] if settings.flip_test else None)
        meta = batch["meta"]
        idx = meta["index"].numpy()
        for k, out in enumerate(outs):
            heat = hops[k].float()
            if mirrored is not None:
                heat = (heat + flip_heatmaps_back(mirrored[k].float(), dataset.flip_pairs)) * 0.5
            out[idx] = heat.cpu().numpy().astype(np.float16)
        centers[idx], sizes[idx] = meta["center"].numpy(), meta["size"].numpy()
    for out in outs:
        out.flush()
    if world > 1:  # every rank filled only its own rows (zeros elsewhere): the sum joins them
        boxes = torch.from_numpy(np.concatenate([centers, sizes], axis=1)).to(rt.device)
        dist.all_reduce(boxes)
        joined = boxes.cpu().numpy()
        centers, sizes = joined[:, :2], joined[:, 2:]
    return centers, sizes


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


def box_instances(coco: CocoPersons, boxes: Sequence[dict[str, Any]], source: str,
                  use_cues: bool) -> InstanceSet:
    """Instances from COCO-style box records (``image_id``, ``bbox``, ``score``, optional
    ``cues``: [[x, y, score], ...]), boxes clipped to their image (one entirely outside it is
    dropped and counted). Boxes are filtered by score and size once, by the detect stage
    (``detector.score_thr``, ``detector.min_box_size``). With ``use_cues`` a box yields one
    instance per cue, or one at its center when it has none (counted as a fallback)."""
    insts, index = [], []
    stats = {"boxes_in": len(boxes), "boxes": 0, "dropped_outside": 0, "cue_fallbacks": 0}
    for i, rec in enumerate(boxes):
        if not isinstance(rec, dict) or rec.get("image_id") not in coco.images:
            got = rec.get("image_id") if isinstance(rec, dict) else rec
            raise DataError(f"{source}: entry {i} refers to unknown image id {got!r}")
        bbox, score = rec.get("bbox"), rec.get("score", 1.0)
        if not (isinstance(bbox, list) and len(bbox) == 4):
            raise DataError(f"{source}: entry {i} needs a bbox [x, y, w, h], got {bbox!r}")
        img = coco.images[rec["image_id"]]
        box = clip_box(bbox, img["width"], img["height"])
        if box is None:
            stats["dropped_outside"] += 1
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


# --------------------------------------------------------------------------- one inference run

def load_pose_model(model_dir: Path, device: str | torch.device = "cpu"
                    ) -> tuple[HintPose, ModelSpec]:
    """A pose model folder written by train@<model>: (network in eval mode, its spec)."""
    source = Path(model_dir) / "model.json"
    net, record = load_network(model_dir, lambda rec: ModelSpec.from_json(rec, source).build(),
                               "pose model", "train", device)
    return net, ModelSpec.from_json(record, source)


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


def run_inference(
    model: torch.nn.Module, spec: ModelSpec, coco: CocoPersons,
    boxes: Sequence[dict[str, Any]], source: str, heatmap_file: Path, rt: Runtime,
    predict: PredictSettings, post: PostSettings, hop_files: Sequence[Path] = (),
) -> InferenceRun:
    """Run ``model`` (described by ``spec``) on ``boxes`` (records as ``box_instances`` takes):
    heatmaps to ``heatmap_file``, then decode, rescoring and per-image OKS-NMS into COCO
    results under the report's protocol and, for a cue model with ``post.neighbour_decay`` <
    1, under cue-aware scoring too. Inside a process group every rank predicts its share, and
    only rank 0 decodes: the others return an empty run. With ``hop_files`` (a recurrent
    model's earlier hops, hop 1 first) their heatmaps go there and their results into
    ``hop_results``."""
    cue = spec.conditioning
    instset = box_instances(coco, boxes, source, use_cues=cue.takes_input)
    dataset = TopDownDataset(coco, instset.instances, spec.data_params(), False, cue=cue)
    start = time.perf_counter()
    centers, sizes = predict_heatmaps(model, dataset, heatmap_file, predict, rt, hop_files)
    seconds = time.perf_counter() - start
    if not current_dist().is_main:  # rank 0 decodes and writes; the file may move once it has
        return InferenceRun(pd.DataFrame(columns=list(INDEX_COLUMNS)), [], {})
    index = instance_index(instset, centers, sizes)
    report = dataclasses.replace(post, neighbour_decay=1.0)

    def poses_of(file: Path) -> np.ndarray:
        heat = np.load(file, mmap_mode="r")
        return decode_heatmaps(lambda sl: heat[sl], len(index), centers, sizes,
                               predict.decoder, dataset.codec.sigma)

    final = poses_of(heatmap_file)
    results = poses_to_results(final, index, report)
    cue_aware = (poses_to_results(final, index, post)
                 if cue.takes_input and post.neighbour_decay != 1.0 else None)
    stats = {**instset.stats, "instances": len(index), "results": len(results),
             "seconds": round(seconds, 2),
             "instances_per_second": round(len(index) / max(seconds, 1e-9), 2)}
    return InferenceRun(index, results, stats,
                        [poses_to_results(poses_of(file), index, report) for file in hop_files],
                        cue_aware)
