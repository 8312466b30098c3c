"""Bottom-up keypoint heatmaps over whole images: targets, samples, training of MultiPoseNet.

Letters in shapes: P persons, J joints, [W, H] network input, [w, h] maps (the input / 4).
A whole image is letterboxed into the input by the affine transform of a top-down crop
(``hintpose.data.topdown``) whose "box" is the image, so training augmentation (scale,
rotation, flip) and the mapping of predicted peaks back to image pixels share one code path.
Heatmap pixel (i, j) sits at input pixel (stride * i, stride * j).

Targets (``BottomUpCodec.encode``): per joint the max over persons of a Gaussian (peak 1,
``sigma`` heatmap pixels, centred at the exact sub-pixel position); one more channel is the
union of the persons' masks. Joint channels carry weight 0 on persons that have no labeled
joints (crowd regions, unlabeled small persons), so the net is not taught that they have none.

Everything random comes from seeds: model init (``multiposenet.seed``), the image order of an
epoch and each sample's augmentation ((seed, epoch, index) streams), so a run killed and
resumed from ``last.pt`` ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from hintpose.config import MultiPoseNetParams
from hintpose.data.coco import CocoPersons, read_image, read_json
from hintpose.data.topdown import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    affine_matrix,
    box_to_center_size,
    flip_keypoints,
    flip_pairs_from_names,
    transform_points,
)
from hintpose.errors import ConfigError, DataError, HintPoseError
from hintpose.models.multiposenet import MultiPoseNet, multiposenet_loss
from hintpose.training import _load_checkpoint, bf16_supported, resolve_device

CHECKPOINT = "last.pt"
MODEL_WEIGHTS = "model.pt"
MODEL_CONFIG = "model.json"
STRIDE = 4
#: multiposenet.train fields that change only speed; a checkpoint resumes across them.
RUNTIME_KEYS = ("workers", "threads", "bf16", "channels_last")
LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_loss_final", "val_loss", "val_loss_final",
               "seconds", "img_s")


# --------------------------------------------------------------------------- masks and codec


def person_mask(ann: dict[str, Any], height: int, width: int) -> np.ndarray:
    """The (H, W) bool mask of an annotation: its RLE (compressed or not) or polygons, or
    its box when it has no segmentation."""
    seg = ann.get("segmentation")
    try:
        if isinstance(seg, list) and seg:
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        elif isinstance(seg, dict):
            rle = (mask_utils.frPyObjects(seg, height, width)
                   if isinstance(seg.get("counts"), list) else dict(seg))
            if isinstance(rle.get("counts"), str):
                rle["counts"] = rle["counts"].encode("ascii")
        else:
            mask = np.zeros((height, width), bool)
            x, y, w, h = ann["bbox"]
            x0, y0 = max(0, int(x)), max(0, int(y))
            mask[y0:max(y0, int(math.ceil(y + h))), x0:max(x0, int(math.ceil(x + w)))] = True
            return mask
        return mask_utils.decode(rle).astype(bool)
    except (ValueError, TypeError, KeyError, UnicodeEncodeError) as exc:
        raise DataError(f"annotation {ann.get('id')!r} (image {ann.get('image_id')!r}): "
                        f"segmentation does not decode ({exc})") from None


@dataclass(frozen=True)
class BottomUpCodec:
    """Whole-image letterbox geometry and the bottom-up targets (see the module docstring)."""

    input_size: tuple[int, int]  # (W, H)
    sigma: float  # heatmap pixels

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return self.input_size[0] // STRIDE, self.input_size[1] // STRIDE

    def frame(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Center and size (image pixels) of the region of a width x height image that fills
        the input: the image, widened or heightened to the input's aspect ratio."""
        aspect = self.input_size[0] / self.input_size[1]
        return box_to_center_size((0, 0, width, height), aspect, 1.0)

    def heatmap_matrix(self, center: np.ndarray, size: np.ndarray, rotation: float = 0.0,
                       inverse: bool = False) -> np.ndarray:
        """(2, 3) image -> heatmap pixels (or back, with ``inverse``)."""
        m = affine_matrix(center, size, rotation, self.input_size)
        m = m / STRIDE  # input pixel x sits at heatmap pixel x / stride
        return cv2.invertAffineTransform(m) if inverse else m

    def encode(self, joints: np.ndarray, use: np.ndarray, persons: np.ndarray,
               ignore: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """joints (P, J, 2) in heatmap pixels, use (P, J) bool (joints that make a peak),
        persons (h, w) float in [0, 1] (union of masks), ignore (h, w) float (unlabeled
        persons) -> target and weight, both (J + 1, h, w) float32, segmentation last."""
        w, h = self.heatmap_size
        num_joints = use.shape[1]
        target = np.zeros((num_joints + 1, h, w), np.float32)
        if len(joints):
            xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
            gx = np.exp(-((xs - joints[..., :1]) ** 2) / (2 * self.sigma**2))  # (P, J, w)
            gy = np.exp(-((ys - joints[..., 1:]) ** 2) / (2 * self.sigma**2))  # (P, J, h)
            maps = gy[..., :, None] * gx[..., None, :] * use[..., None, None]
            target[:num_joints] = maps.max(axis=0)
        target[num_joints] = persons
        weight = np.ones_like(target)
        weight[:num_joints] *= (1.0 - np.clip(ignore, 0.0, 1.0))[None]
        return target, weight


def build_codec(config: dict[str, Any]) -> BottomUpCodec:
    return BottomUpCodec((int(config["input_width"]), int(config["input_height"])),
                         float(config["sigma"]))


# --------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class Augmentation:
    """Random scale / rotation / flip of the whole image (``multiposenet.train``)."""

    scale_factor: float = 0.0
    rotation_factor: float = 0.0
    rotation_prob: float = 0.0
    flip: bool = False


class BottomUpDataset(Dataset):
    """Whole images of ``coco`` (``image_ids``) letterboxed into the input, with targets.

    Item ``(epoch, index)`` -> (image (3, H, W), target (J + 1, h, w), weight (J + 1, h, w),
    meta: index, image_id, center, size); ``targets=False`` gives empty target and weight
    (inference). Without ``augment`` the epoch does not matter and ``center``/``size`` map
    heatmap peaks back to the image (``heatmap_matrix``)."""

    def __init__(self, coco: CocoPersons, image_ids: Sequence[int], codec: BottomUpCodec,
                 visible_only: bool = True, augment: Augmentation | None = None,
                 seed: int = 0, targets: bool = True) -> None:
        self.coco, self.image_ids, self.codec = coco, list(image_ids), codec
        self.visible_only, self.augment, self.seed = visible_only, augment, seed
        self.targets = targets
        self.flip_pairs = flip_pairs_from_names(coco.category["keypoints"])

    def __len__(self) -> int:
        return len(self.image_ids)

    def _draw(self, index: int, epoch: int, center: np.ndarray,
              size: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """The augmentation of a sample: (crop size, rotation, flip)."""
        a, rng = self.augment, np.random.default_rng([self.seed, epoch, index])
        if a is None:
            return size, 0.0, False
        sf = a.scale_factor
        size = size * float(np.clip(rng.standard_normal() * sf + 1, 1 - sf, 1 + sf))
        rot = 0.0
        if rng.random() < a.rotation_prob:
            rf = a.rotation_factor
            rot = float(np.clip(rng.standard_normal() * rf, -2 * rf, 2 * rf))
        return size, rot, a.flip and bool(rng.random() < 0.5)

    def _targets(self, iid: int, height: int, width: int, flip: bool, m_in: np.ndarray,
                 m_hm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        anns = self.coco.annotations_of(iid)
        labeled = [a for a in anns if not a.get("iscrowd", 0) and a["num_keypoints"] > 0]
        kpts = np.asarray([a["keypoints"] for a in labeled], np.float64).reshape(
            -1, self.coco.num_joints, 3)
        persons = np.zeros((height, width), np.float32)
        ignore = np.zeros((height, width), np.float32)
        for a in anns:
            mask = person_mask(a, height, width)
            persons[mask] = 1.0
            if a.get("iscrowd", 0) or a["num_keypoints"] == 0:
                ignore[mask] = 1.0
        if flip:
            persons, ignore = persons[:, ::-1], ignore[:, ::-1]
            kpts = np.stack([flip_keypoints(k, width, self.flip_pairs) for k in kpts]) \
                if len(kpts) else kpts
        # Masks: warped at the input size, then area-averaged down to the maps.
        persons_hm, ignore_hm = (
            cv2.resize(cv2.warpAffine(np.ascontiguousarray(m), m_in, self.codec.input_size,
                                      flags=cv2.INTER_LINEAR), self.codec.heatmap_size,
                       interpolation=cv2.INTER_AREA)
            for m in (persons, ignore))
        use = kpts[..., 2] >= 2 if self.visible_only else kpts[..., 2] > 0
        return self.codec.encode(transform_points(kpts[..., :2], m_hm), use, persons_hm,
                                 ignore_hm)

    def __getitem__(self, key: tuple[int, int] | int) -> tuple[Any, ...]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        iid = self.image_ids[index]
        image = read_image(self.coco.image_path(iid))
        height, width = image.shape[:2]
        center, size = self.codec.frame(width, height)
        size, rot, flip = self._draw(index, epoch, center, size)
        if flip:
            image = image[:, ::-1]
        m_in = affine_matrix(center, size, rot, self.codec.input_size)
        crop = cv2.warpAffine(np.ascontiguousarray(image), m_in, self.codec.input_size,
                              flags=cv2.INTER_LINEAR)
        rgb = crop[:, :, ::-1].astype(np.float32) / 255.0
        tensor = torch.from_numpy(((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).copy())
        target = weight = np.zeros(0, np.float32)
        if self.targets:
            m_hm = self.codec.heatmap_matrix(center, size, rot)
            target, weight = self._targets(iid, height, width, flip, m_in, m_hm)
        meta = {"index": index, "image_id": iid, "center": center.astype(np.float32),
                "size": size.astype(np.float32)}
        return tensor, torch.from_numpy(target), torch.from_numpy(weight), meta


def _worker_init(_: int) -> None:
    cv2.setNumThreads(1)


def make_loader(dataset: BottomUpDataset, keys: Sequence[Any], batch_size: int,
                workers: int) -> DataLoader:
    """Batches of ``dataset`` items in the order of ``keys``."""
    return DataLoader(dataset, batch_size=batch_size, sampler=list(keys), num_workers=workers,
                      worker_init_fn=_worker_init if workers > 0 else None)


# --------------------------------------------------------------------------- model files


def model_config(params: MultiPoseNetParams, coco: CocoPersons) -> dict[str, Any]:
    """What inference needs to rebuild the net and prepare its input (``model.json``)."""
    return {
        "depth": params.depth, "width": params.width, "fpn_channels": params.fpn_channels,
        "head_channels": params.head_channels, "num_joints": coco.num_joints,
        "input_width": params.input_width, "input_height": params.input_height,
        "sigma": params.sigma, "visible_only": params.visible_only,
        "keypoint_names": list(coco.category["keypoints"]), "seed": params.seed,
    }


def build_model(config: dict[str, Any]) -> MultiPoseNet:
    return MultiPoseNet(config["depth"], config["width"], config["num_joints"],
                        config["fpn_channels"], config["head_channels"])


def save_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through a temporary file and ``os.replace``: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: Any, indent: int | None = 2) -> None:
    save_atomic(Path(path), lambda p: p.write_text(json.dumps(obj, indent=indent) + "\n"))


def save_model(out_dir: Path, net: MultiPoseNet, config: dict[str, Any]) -> None:
    """``model.pt`` (plain state dict) and ``model.json`` (structure and input settings)."""
    out_dir = Path(out_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_atomic(out_dir / MODEL_WEIGHTS, lambda p: torch.save(state, p))
    write_json(out_dir / MODEL_CONFIG, config)


def load_model(model_dir: Path, device: str | torch.device = "cpu"
               ) -> tuple[MultiPoseNet, dict[str, Any]]:
    """Rebuild a net written by :func:`save_model`: (net in eval mode, config)."""
    model_dir = Path(model_dir)
    config = read_json(model_dir / MODEL_CONFIG,
                       "MultiPoseNet description (run the train_multiposenet stage)")
    try:
        net = build_model(config)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{model_dir / MODEL_CONFIG}: not a MultiPoseNet description "
                        f"({exc!r})") from None
    weights = model_dir / MODEL_WEIGHTS
    if not weights.is_file():
        raise DataError(f"{weights}: MultiPoseNet weights not found")
    try:
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except Exception as exc:
        raise DataError(f"{weights}: does not fit {MODEL_CONFIG} ({str(exc)[:300]})") from None
    return net.to(device).eval(), config


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class StepSettings:
    """Device, bf16 autocast (only where it is fast) and memory format of the batches."""

    device: torch.device
    bf16: bool
    channels_last: bool

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def forward(self, net: MultiPoseNet, image: torch.Tensor) -> tuple[torch.Tensor,
                                                                       list[torch.Tensor]]:
        image = image.to(self.device, non_blocking=True, memory_format=self.memory_format)
        with self.autocast():
            maps, levels = net(image)
        return maps.float(), [lv.float() for lv in levels]


def _losses(net: MultiPoseNet, batch: Sequence[Any], s: StepSettings
            ) -> tuple[torch.Tensor, torch.Tensor]:
    image, target, weight = batch[0], batch[1].to(s.device), batch[2].to(s.device)
    maps, levels = s.forward(net, image)
    return multiposenet_loss(maps, levels, target, weight)


@torch.no_grad()
def validation_loss(net: MultiPoseNet, loader: DataLoader, s: StepSettings) -> tuple[float,
                                                                                      float]:
    """Mean (total, final-maps) loss over the loader; NaN when it is empty."""
    net.eval()
    total = final = 0.0
    count = 0
    for batch in tqdm(loader, desc="val", leave=False):
        n = batch[0].shape[0]
        t, f = _losses(net, batch, s)
        total, final, count = total + float(t) * n, final + float(f) * n, count + n
    return (total / count, final / count) if count else (math.nan, math.nan)


def _fingerprint(config: dict[str, Any], params: MultiPoseNetParams,
                 image_ids: Sequence[int]) -> dict[str, Any]:
    train = {k: v for k, v in dataclasses.asdict(params.train).items() if k not in RUNTIME_KEYS}
    digest = hashlib.sha256(np.asarray(image_ids, np.int64).tobytes()).hexdigest()[:16]
    return {**config, "train": train, "pretrained": params.pretrained, "images": digest}


def train_image_ids(coco: CocoPersons, max_images: int, seed: int) -> list[int]:
    """Images with at least one labeled person; ``max_images`` > 0 draws that many (seeded)."""
    ids = sorted(i for i in coco.images
                 if any(not a.get("iscrowd", 0) and a["num_keypoints"] > 0
                        for a in coco.annotations_of(i)))
    if not ids:
        raise DataError(f"{coco.annotation_file}: no image with a labeled person to train on")
    if 0 < max_images < len(ids):
        keep = np.sort(np.random.default_rng(seed).choice(len(ids), max_images, replace=False))
        ids = [ids[i] for i in keep]
    return ids


@dataclass
class TrainResult:
    model: MultiPoseNet
    config: dict[str, Any]
    log: list[dict[str, float]]
    resumed_epochs: int


def train_multiposenet(
    train_coco: CocoPersons, val_coco: CocoPersons | None, params: MultiPoseNetParams,
    checkpoint_dir: Path | None = None, *, progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train the keypoint subnet (Adam, step decay); resumable from ``checkpoint_dir/last.pt``
    (written after every epoch; one made with other settings is ignored, with a note).
    ``on_epoch_end(epoch, row)`` runs after the checkpoint; raising there stops training as a
    kill would."""
    tp = params.train
    device = resolve_device(params.device, key="multiposenet.device")
    if tp.threads > 0:
        torch.set_num_threads(tp.threads)
    steps = StepSettings(device, tp.bf16 and bf16_supported(device), tp.channels_last)
    if tp.bf16 and not steps.bf16:
        print(f"note: multiposenet.train.bf16 has no effect: no fast bf16 kernels on {device}; "
              "training in fp32", flush=True)
    ids = train_image_ids(train_coco, tp.max_images, params.seed)
    config = model_config(params, train_coco)
    fingerprint = _fingerprint(config, params, ids)
    torch.manual_seed(params.seed)
    net = build_model(config)
    if params.pretrained:
        try:
            net.load_backbone(params.pretrained)
        except Exception as exc:
            if isinstance(exc, HintPoseError):
                raise
            raise ConfigError(f"multiposenet.pretrained: {params.pretrained} does not load into "
                              f"a ResNet-{params.depth} of width {params.width} "
                              f"({str(exc)[:300]})") from None
    if steps.channels_last and device.type == "cpu" and not net.channels_last_trainable():
        print("note: multiposenet.train.channels_last is off for this narrow trunk (a PyTorch "
              "CPU bug with 1x1 stride-2 convs of under 8 channels)", flush=True)
        steps = dataclasses.replace(steps, channels_last=False)
    net.to(device=device, memory_format=steps.memory_format)
    optimizer = torch.optim.Adam(net.parameters(), lr=tp.lr)
    milestones = [max(1, round(f * tp.epochs)) for f in tp.lr_steps]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=tp.lr_factor)

    log: list[dict[str, float]] = []
    start = 0
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    ckpt = _load_checkpoint(ckpt_path, fingerprint) if ckpt_path is not None else None
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        log, start = list(ckpt["log"]), int(ckpt["epoch"])
        print(f"resuming from {ckpt_path} after epoch {start}/{tp.epochs}", flush=True)

    codec = build_codec(config)
    aug = Augmentation(tp.scale_factor, tp.rotation_factor, tp.rotation_prob, tp.flip)
    train_ds = BottomUpDataset(train_coco, ids, codec, params.visible_only, aug, params.seed)
    val_loader = None
    if val_coco is not None:
        val_ids = sorted(val_coco.images)
        val_ids = val_ids[:tp.val_images] if tp.val_images > 0 else val_ids
        val_ds = BottomUpDataset(val_coco, val_ids, codec, params.visible_only)
        val_loader = make_loader(val_ds, range(len(val_ds)), tp.batch_size, tp.workers)

    for epoch in range(start, tp.epochs):
        t0 = time.perf_counter()
        order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(
            params.seed * 100_003 + epoch)).tolist()
        loader = make_loader(train_ds, [(epoch, i) for i in order], tp.batch_size, tp.workers)
        lr = optimizer.param_groups[0]["lr"]
        net.train()
        sums, count = torch.zeros(2, dtype=torch.float64), 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{tp.epochs}", leave=False,
                   disable=not progress)
        for batch in bar:
            total, final = _losses(net, batch, steps)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            n = batch[0].shape[0]
            total, final = total.detach(), final.detach()
            sums += torch.stack([total, final]).double().cpu() * n
            count += n
            bar.set_postfix(loss=f"{float(total):.3e}", refresh=False)
        scheduler.step()
        train_seconds = time.perf_counter() - t0
        val = (validation_loss(net, val_loader, steps) if val_loader is not None
               else (math.nan, math.nan))
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": float(sums[0]) / max(count, 1),
               "train_loss_final": float(sums[1]) / max(count, 1), "val_loss": val[0],
               "val_loss_final": val[1], "seconds": time.perf_counter() - t0,
               "img_s": count / max(train_seconds, 1e-9)}
        log.append(row)
        if ckpt_path is not None:
            state = {"fingerprint": fingerprint, "epoch": epoch + 1, "model": net.state_dict(),
                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "log": log}
            save_atomic(ckpt_path, lambda p, s=state: torch.save(s, p))
        print(f"epoch {epoch + 1}/{tp.epochs}  lr {lr:.2e}  train {row['train_loss']:.4e}  "
              f"val {row['val_loss']:.4e}  {row['img_s']:.1f} img/s  {row['seconds']:.0f} s",
              flush=True)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    net.eval()
    return TrainResult(net, config, log, start)


def write_log_tsv(path: Path, log: Sequence[dict[str, float]]) -> None:
    """The per-epoch table (LOG_COLUMNS) as TSV for ``dvc plots``."""
    frame = pd.DataFrame(list(log), columns=list(LOG_COLUMNS))
    frame["epoch"] = frame["epoch"].astype(int)
    save_atomic(Path(path), lambda p: frame.to_csv(p, sep="\t", index=False,
                                                   float_format="%.6g"))


def summary_metrics(log: Sequence[dict[str, float]]) -> dict[str, float]:
    """Final losses, epochs, total seconds and mean training throughput."""
    if not log:
        return {"epochs": 0}
    last = log[-1]
    out = {"epochs": int(last["epoch"]), "train_loss": last["train_loss"],
           "train_loss_final": last["train_loss_final"], "val_loss": last["val_loss"],
           "val_loss_final": last["val_loss_final"],
           "train_seconds": round(sum(r["seconds"] for r in log), 2),
           "img_s": round(sum(r["img_s"] for r in log) / len(log), 2)}
    return {k: (v if isinstance(v, int) or math.isfinite(v) else None) for k, v in out.items()}
