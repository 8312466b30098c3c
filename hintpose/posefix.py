"""PoseFix: training on GT poses with synthesized errors and refinement of any COCO keypoint
results file (inputs in ``posefix_data``, the analysis of its effect in ``posefix_analysis``).

Training (PoseFix's recipe, sized by ``posefix.train``): Adam, step decay of the lr at
fractions ``lr_steps``, loss = heatmap cross-entropy + ``coord_weight`` x soft-argmax L1
(``hintpose.models.posefix.posefix_loss``); input poses and augmentation come from (seed,
epoch, index) streams, so a run resumed from ``last.pt`` ends with the same weights as an
uninterrupted one. Refinement crops every input pose as PoseFix at test time, predicts the
soft-argmax coordinates (averaged with a flip pass with ``flip_test``), keeps each instance's
score and its per-joint scores (only the coordinates change; PoseFix gives every joint the
instance score, which COCO's metric ignores), and runs the per-image OKS-NMS again on the
padded crop areas, since two inputs may have been corrected onto the same person.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from hintpose.config import PosefixParams
from hintpose.data.coco import CocoPersons, read_json
from hintpose.data.keypoints import COCO_SIGMAS
from hintpose.data.topdown import flip_pairs_from_names, transform_points
from hintpose.errors import DataError
from hintpose.models.posefix import PoseFix, posefix_loss, soft_argmax
from hintpose.posefix_data import (
    PosefixTrainSet,
    RefineSet,
    posefix_people,
)
from hintpose.postprocess import oks_nms, soft_oks_nms
from hintpose.training import _load_checkpoint, _save_atomic, bf16_supported, resolve_device

CHECKPOINT = "last.pt"
MODEL_WEIGHTS = "model.pt"
MODEL_CONFIG = "model.json"
HEAD_LAYERS = 3
#: posefix.train fields that change speed only; a checkpoint resumes across them.
RUNTIME_KEYS = ("workers", "threads", "bf16", "channels_last")
#: Seed of the validation input poses: the same for every run, so validation losses compare.
VAL_SEED = 0
LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_ce", "train_l1", "val_loss", "val_l1",
               "seconds")


def model_config(params: PosefixParams, coco: CocoPersons) -> dict[str, Any]:
    """What refinement needs to rebuild the network and prepare its inputs (``model.json``)."""
    keys = ("depth", "width", "head_channels", "input_skip", "input_width", "input_height",
            "pose_sigma", "box_extent", "min_box", "box_padding", "seed")
    return {**{k: getattr(params, k) for k in keys}, "head_layers": HEAD_LAYERS,
            "num_joints": coco.num_joints, "keypoint_names": list(coco.category["keypoints"])}


def build_model(config: dict[str, Any]) -> PoseFix:
    return PoseFix(config["num_joints"], config["depth"], config["width"],
                   config["head_channels"], config["head_layers"], config["input_skip"])


def config_params(config: dict[str, Any], params: PosefixParams) -> PosefixParams:
    """``params`` with the crop and input settings a model was trained with."""
    keys = ("depth", "width", "head_channels", "input_skip", "input_width", "input_height",
            "pose_sigma", "box_extent", "min_box", "box_padding")
    return dataclasses.replace(params, **{k: config[k] for k in keys})


def save_model(out_dir: Path, net: torch.nn.Module, config: dict[str, Any]) -> None:
    """``model.pt`` (plain state dict) and ``model.json`` (structure and input settings)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _save_atomic({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
                 out_dir / MODEL_WEIGHTS)
    (out_dir / MODEL_CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def load_model(model_dir: Path, device: torch.device | str = "cpu"
               ) -> tuple[PoseFix, dict[str, Any]]:
    """A model written by :func:`save_model`, in eval mode, with its config."""
    model_dir = Path(model_dir)
    config = read_json(model_dir / MODEL_CONFIG, "PoseFix model description (run train_posefix)")
    weights = model_dir / MODEL_WEIGHTS
    if not weights.is_file():
        raise DataError(f"{weights}: PoseFix weights not found (run train_posefix)")
    try:
        net = build_model(config)
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise DataError(f"{weights}: does not fit {MODEL_CONFIG} ({str(exc)[:300]})") from None
    return net.to(device).eval(), config


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    model: PoseFix
    config: dict[str, Any]
    log: list[dict[str, float]]
    resumed_epochs: int


def _worker_init(_: int) -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _people_digest(people: Sequence[Any]) -> str:
    h = hashlib.sha256()
    for p in people:
        h.update(np.int64(p.image_id).tobytes())
        h.update(np.ascontiguousarray(p.keypoints, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def _batches(dataset: PosefixTrainSet, order: Sequence[int], batch_size: int, workers: int,
             desc: str, show: bool) -> Any:
    loader = DataLoader(dataset, batch_size=batch_size, sampler=list(order),
                        num_workers=workers, worker_init_fn=_worker_init if workers else None)
    return tqdm(loader, desc=desc, leave=False, disable=not show)


def _loss(net: torch.nn.Module, batch: Sequence[torch.Tensor], device: torch.device,
          bf16: bool, channels_last: bool, coord_weight: float
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    image, maps, target, valid = (t.to(device) for t in batch[:4])
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = net(image.contiguous(memory_format=fmt), maps.contiguous(memory_format=fmt))
    return posefix_loss(logits.float(), target, valid, coord_weight)


def train_posefix(train_coco: CocoPersons, val_coco: CocoPersons | None,
                  params: PosefixParams, checkpoint_dir: Path | None = None, *,
                  progress: bool = True,
                  on_epoch_end: Callable[[int, dict[str, float]], None] | None = None
                  ) -> TrainResult:
    """Train PoseFix on the GT persons of ``train_coco`` (see the module docstring); with
    ``checkpoint_dir``, ``last.pt`` after every epoch lets a killed run continue."""
    tp = params.train
    device = resolve_device(params.device, key="posefix.device")
    if tp.threads > 0:
        torch.set_num_threads(tp.threads)
    bf16 = tp.bf16 and bf16_supported(device)
    people = posefix_people(train_coco)
    if not people:
        raise DataError(f"{train_coco.annotation_file}: no trainable persons for PoseFix")
    if 0 < tp.max_samples < len(people):
        keep = np.sort(np.random.default_rng(params.seed).choice(len(people), tp.max_samples,
                                                                 replace=False))
        people = [people[i] for i in keep]
    config = model_config(params, train_coco)
    train = {k: v for k, v in dataclasses.asdict(tp).items() if k not in RUNTIME_KEYS}
    fingerprint = {**config, "train": train, "people": _people_digest(people)}

    torch.manual_seed(params.seed)
    net = build_model(config)
    fmt = torch.channels_last if tp.channels_last else torch.contiguous_format
    net.to(device=device, memory_format=fmt)
    optimizer = torch.optim.Adam(net.parameters(), lr=tp.lr)
    milestones = [max(1, round(f * tp.epochs)) for f in tp.lr_steps]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=tp.lr_factor)
    log: list[dict[str, float]] = []
    start = 0
    ckpt_path = checkpoint_dir / CHECKPOINT if checkpoint_dir is not None else None
    ckpt = _load_checkpoint(ckpt_path, fingerprint) if ckpt_path is not None else None
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        log, start = list(ckpt["log"]), int(ckpt["epoch"])
        print(f"resuming from {ckpt_path} after epoch {start}/{tp.epochs}", flush=True)

    train_set = PosefixTrainSet(train_coco, people, params, net.stride, True, params.seed)
    val_set = None
    if val_coco is not None:
        val_people = posefix_people(val_coco)
        if 0 < tp.val_samples < len(val_people):
            keep = np.sort(np.random.default_rng(VAL_SEED).choice(len(val_people),
                                                                  tp.val_samples, False))
            val_people = [val_people[i] for i in keep]
        if val_people:
            val_set = PosefixTrainSet(val_coco, val_people, params, net.stride, False, VAL_SEED)
    for epoch in range(start, tp.epochs):
        t0 = time.perf_counter()
        train_set.set_epoch(epoch)
        order = np.random.default_rng([params.seed, epoch]).permutation(len(train_set))
        lr = optimizer.param_groups[0]["lr"]
        net.train()
        sums, count = np.zeros(3), 0
        bar = _batches(train_set, order, tp.batch_size, tp.workers,
                       f"posefix epoch {epoch + 1}/{tp.epochs}", progress)
        for batch in bar:
            loss, ce, l1 = _loss(net, batch, device, bf16, tp.channels_last, tp.coord_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n = batch[0].shape[0]
            sums += np.array([loss.item(), ce.item(), l1.item()]) * n
            count += n
            bar.set_postfix(loss=f"{sums[0] / count:.3f}", refresh=False)
        scheduler.step()
        val = _validate(net, val_set, tp.batch_size, device, bf16, tp.channels_last,
                        tp.coord_weight, progress) if val_set is not None else (math.nan,) * 2
        # plain floats: the checkpoint holding the log is read with weights_only=True
        row = {"epoch": epoch + 1, "lr": float(lr), "train_loss": float(sums[0] / count),
               "train_ce": float(sums[1] / count), "train_l1": float(sums[2] / count),
               "val_loss": float(val[0]), "val_l1": float(val[1]),
               "seconds": time.perf_counter() - t0}
        log.append(row)
        if ckpt_path is not None:
            ckpt_path.parent.mkdir(parents=True, exist_ok=True)
            _save_atomic({"fingerprint": fingerprint, "epoch": epoch + 1,
                          "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "log": log}, ckpt_path)
        print(f"posefix epoch {epoch + 1}/{tp.epochs}  lr {lr:.2e}  train {row['train_loss']:.4f}"
              f" (ce {row['train_ce']:.4f}, l1 {row['train_l1']:.3f})  val {row['val_loss']:.4f}"
              f" (l1 {row['val_l1']:.3f})  {count / row['seconds']:.1f} persons/s  "
              f"{row['seconds']:.0f} s", flush=True)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    net.eval()
    return TrainResult(net, config, log, start)


@torch.no_grad()
def _validate(net: torch.nn.Module, dataset: PosefixTrainSet, batch_size: int,
              device: torch.device, bf16: bool, channels_last: bool, coord_weight: float,
              progress: bool) -> tuple[float, float]:
    """Mean loss and coordinate L1 (output-map pixels) on fixed synthesized val inputs."""
    net.eval()
    total, l1_total, count = 0.0, 0.0, 0
    for batch in _batches(dataset, range(len(dataset)), batch_size, 0, "val", progress):
        loss, _, l1 = _loss(net, batch, device, bf16, channels_last, coord_weight)
        n = batch[0].shape[0]
        total, l1_total, count = total + loss.item() * n, l1_total + l1.item() * n, count + n
    return total / max(count, 1), l1_total / max(count, 1)


def write_log_tsv(path: Path, log: Sequence[dict[str, float]]) -> None:
    """The per-epoch table (LOG_COLUMNS) as TSV for ``dvc plots``."""
    lines = ["\t".join(LOG_COLUMNS)]
    for row in log:
        lines.append("\t".join(str(int(row[c])) if c == "epoch" else f"{row[c]:.6g}"
                               for c in LOG_COLUMNS))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- refinement


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def read_pose_results(path: str | Path, coco: CocoPersons) -> list[dict[str, Any]]:
    """COCO keypoint results from ``path`` checked against the split ``coco``: a list of
    objects with a known ``image_id``, 3 x J finite ``keypoints`` and a finite ``score``;
    anything else is a DataError naming the file and the entry."""
    path = Path(path)
    data = read_json(path, "keypoint results file")
    if not isinstance(data, list):
        raise DataError(f"{path}: keypoint results must be a JSON list, got a "
                        f"{type(data).__name__}")
    j3 = 3 * coco.num_joints
    for i, rec in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(rec, dict):
            raise DataError(f"{where} is not a JSON object: {str(rec)[:80]}")
        iid = rec.get("image_id")
        if isinstance(iid, bool) or not isinstance(iid, int) or iid not in coco.images:
            raise DataError(f"{where} refers to unknown image id {iid!r} (not in "
                            f"{coco.annotation_file.name})")
        kpts = rec.get("keypoints")
        if not (isinstance(kpts, list) and len(kpts) == j3 and all(map(_finite, kpts))):
            raise DataError(f"{where} needs {j3} finite keypoint values (3 x "
                            f"{coco.num_joints} joints)")
        if not _finite(rec.get("score")):
            raise DataError(f"{where} needs a finite score, got {rec.get('score')!r}")
    return data


@dataclass
class Refinement:
    """Refined poses aligned with the input entries (before NMS) and the final results."""

    refined: list[dict[str, Any]]
    results: list[dict[str, Any]]
    stats: dict[str, Any]


@torch.no_grad()
def refine_results(net: PoseFix, config: dict[str, Any], coco: CocoPersons,
                   entries: Sequence[dict[str, Any]], params: PosefixParams,
                   device: torch.device, nms_thr: float = 0.9, soft_nms: bool = False,
                   progress: bool = True) -> Refinement:
    """Refine every entry scoring at least ``params.min_score`` (others pass through
    unchanged), keeping its scores, then OKS-NMS per image (see the module docstring)."""
    start = time.perf_counter()
    params = config_params(config, params)
    bf16 = params.train.bf16 and bf16_supported(device)
    fmt = torch.channels_last if params.train.channels_last else torch.contiguous_format
    todo = [i for i, e in enumerate(entries) if e["score"] >= params.min_score]
    dataset = RefineSet(coco, [entries[i] for i in todo], params)
    perm = list(range(config["num_joints"]))
    for a, b in flip_pairs_from_names(config["keypoint_names"]):
        perm[a], perm[b] = b, a
    width = params.input_width
    coords = np.zeros((len(todo), config["num_joints"], 2))
    loader = DataLoader(dataset, batch_size=params.batch_size, shuffle=False,
                        num_workers=params.train.workers, worker_init_fn=_worker_init
                        if params.train.workers else None)
    done = 0
    net.eval()
    for image, maps, inverse in tqdm(loader, desc="refine", unit="batch", disable=not progress):
        image = image.to(device).contiguous(memory_format=fmt)
        maps = maps.to(device).contiguous(memory_format=fmt)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            xy = soft_argmax(net(image, maps).float()) * net.stride
            if params.flip_test:
                flipped = soft_argmax(net(image.flip(3), maps.flip(3)[:, perm]).float())
                flipped = flipped[:, perm] * net.stride
                flipped[..., 0] = width - 1 - flipped[..., 0]
                xy = (xy + flipped) / 2
        for k, (pts, inv) in enumerate(zip(xy.cpu().numpy(), inverse.numpy(), strict=True)):
            coords[done + k] = transform_points(pts.astype(np.float64), inv)
        done += len(xy)
    refined = [dict(e) for e in entries]
    areas = np.zeros(len(entries))
    for k, i in enumerate(todo):
        kpts = np.reshape(entries[i]["keypoints"], (-1, 3)).astype(np.float64)
        kpts[:, :2] = coords[k]
        refined[i]["keypoints"] = np.round(kpts, 3).ravel().tolist()
        areas[i] = float(np.prod(dataset.crop(k)[1]))
    for i in set(range(len(entries))) - set(todo):
        kpts = np.reshape(entries[i]["keypoints"], (-1, 3))
        span = kpts[:, :2].max(0) - kpts[:, :2].min(0)
        areas[i] = float(np.prod(np.maximum(span, 1.0)))
    results = _nms(refined, areas, nms_thr, soft_nms)
    stats = {"inputs": len(entries), "refined": len(todo), "results": len(results),
             "seconds": round(time.perf_counter() - start, 2), "flip_test": params.flip_test}
    return Refinement(refined, results, stats)


def _nms(entries: Sequence[dict[str, Any]], areas: np.ndarray, thr: float,
         soft: bool) -> list[dict[str, Any]]:
    by_image: dict[int, list[int]] = defaultdict(list)
    for i, e in enumerate(entries):
        by_image[e["image_id"]].append(i)
    nms = soft_oks_nms if soft else oks_nms
    out = []
    for iid in sorted(by_image):
        idx = np.asarray(by_image[iid])
        kpts = np.array([np.reshape(entries[i]["keypoints"], (-1, 3)) for i in idx])
        scores = np.array([entries[i]["score"] for i in idx], dtype=np.float64)
        sig = COCO_SIGMAS if kpts.shape[1] == len(COCO_SIGMAS) else np.full(kpts.shape[1], 0.079)
        out += [entries[idx[k]] for k in nms(kpts, scores, areas[idx], thr, sig)]
    return out
