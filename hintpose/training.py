"""Training of the top-down pose models with HRNet's COCO recipe, resumable and DDP-ready.

Recipe (official HRNet ``w32_256x192``): Adam without weight decay, step decay of the lr by
``lr_factor`` at fractions ``lr_steps`` of the schedule, JointsMSELoss with target weights,
summed over the hops of a recurrent model; the validation loss is that of the last hop.

Everything that decides the result comes from seeds: the model init (``torch.manual_seed``),
the training subset (``max_samples``), the shuffle order (a generator seeded from (seed,
epoch)) and the augmentation (TopDownDataset's (seed, epoch, index) streams). So a run that
is killed and resumed from ``last.pt`` ends with the same weights as an uninterrupted one.

Under ``torchrun`` (RANK / WORLD_SIZE set) :func:`distributed_session` starts a process group;
:func:`train_pose_model` then wraps the model in DistributedDataParallel, gives every rank its
share of each epoch, averages the logged losses over ranks and writes checkpoints on rank 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from hintpose.config import ModelParams, PoseParams
from hintpose.data.coco import CocoPersons, read_json
from hintpose.data.topdown import Instance, TopDownDataset, training_instances
from hintpose.errors import ConfigError, DataError, HintPoseError
from hintpose.models.hintpose import HintPose, joints_mse_loss
from hintpose.models.hrnet import OFFICIAL_BLOCKS, OFFICIAL_MODULES

CHECKPOINT = "last.pt"
MODEL_WEIGHTS = "model.pt"
MODEL_CONFIG = "model.json"
#: The pretrain stage's HRNet (official parameter names), the init of every pose model.
BACKBONE_WEIGHTS = "hrnet.pt"
#: Seed of the validation subset and its cues: the same for every model, so that the
#: validation losses of different models compare.
VAL_SEED = 0
#: pose.train fields that only change speed, not the result; a checkpoint resumes across them.
RUNTIME_KEYS = ("workers", "threads", "bf16", "channels_last")

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
EpochCallback = Callable[[int, dict[str, float]], None]


# --------------------------------------------------------------------------- devices, processes


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def current_dist() -> DistInfo:
    """Rank and world size of the initialised process group (a single process otherwise)."""
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return DistInfo(dist.get_rank(), dist.get_world_size(), local)
    return DistInfo()


def resolve_device(name: str, local_rank: int = 0, key: str = "pose.device") -> torch.device:
    """A device param (``key``) -> a torch device: ``auto`` is CUDA when present, else the
    CPU; each process of a multi-GPU run takes the GPU of its local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key} is 'cuda' but no CUDA device is available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


@contextlib.contextmanager
def distributed_session(device: str = "auto") -> Iterator[DistInfo]:
    """Start a process group when launched by torchrun with WORLD_SIZE > 1 (NCCL on CUDA,
    gloo on the CPU) and end it afterwards (after a barrier when all went well)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        yield current_dist()
        return
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    ok = False
    try:
        yield current_dist()
        ok = True
    finally:
        if ok:
            dist.barrier()
        dist.destroy_process_group()


def _all_reduce_sum(values: Sequence[float], info: DistInfo, device: torch.device) -> list[float]:
    if not info.distributed:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# --------------------------------------------------------------------------- model and data


def model_hops(pose: PoseParams, model: ModelParams) -> int:
    """Number of outputs: ``pose.hops`` for a recurrent model, else one."""
    return pose.hops if model.recurrent else 1


def model_config(pose: PoseParams, model: ModelParams, coco: CocoPersons) -> dict[str, Any]:
    """What inference needs to rebuild the network and prepare its inputs (``model.json``)."""
    d = pose.data
    return {
        "width": pose.width,
        "modules": list(pose.modules),
        "blocks": pose.blocks,
        "init": pose.init,
        "instance_cue": model.instance_cue,
        "recurrent": model.recurrent,
        "hops": model_hops(pose, model),
        "num_joints": coco.num_joints,
        "input_width": d.input_width,
        "input_height": d.input_height,
        "sigma": d.sigma,
        "cue_sigma": d.cue_sigma,
        "box_padding": d.box_padding,
        "keypoint_names": list(coco.category["keypoints"]),
        "seed": model.seed,
    }


def build_model(config: dict[str, Any]) -> HintPose:
    """A HintPose network of the structure in ``config`` (see :func:`model_config`)."""
    return HintPose(config["width"], config["instance_cue"], config["recurrent"],
                    hops=config["hops"], num_joints=config["num_joints"],
                    modules=tuple(config.get("modules", OFFICIAL_MODULES)),
                    blocks=config.get("blocks", OFFICIAL_BLOCKS),
                    init=config.get("init", "official"))


def load_pretrained_backbone(net: HintPose, path: str | Path,
                             key: str = "pose.pretrained") -> None:
    """Load an (official) HRNet checkpoint into the backbone; a missing or mismatched file is
    a ConfigError naming it (and the parameter ``key`` it came from)."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{key}: checkpoint file {file} not found")
    try:
        net.load_backbone(file)
    except HintPoseError:
        raise
    except Exception as exc:  # shape/key mismatch or an unreadable file
        msg = str(exc).strip() or type(exc).__name__
        if str(file) not in msg:
            msg = f"{file} does not fit HRNet-W{net.width} ({msg})"
        raise ConfigError(f"{key}: {msg[:600]}") from None


def select_training_instances(coco: CocoPersons, max_samples: int, seed: int) -> list[Instance]:
    """Trainable persons of ``coco``; with ``max_samples`` > 0, a subset of that many drawn
    with ``seed`` (kept in dataset order)."""
    instances = training_instances(coco)
    if not instances:
        raise DataError(f"{coco.annotation_file}: no trainable persons (need non-crowd persons "
                        "with labeled keypoints)")
    if 0 < max_samples < len(instances):
        keep = np.sort(np.random.default_rng(seed).choice(len(instances), max_samples,
                                                          replace=False))
        instances = [instances[i] for i in keep]
    return instances


def validation_instances(coco: CocoPersons, val_samples: int,
                         seed: int = VAL_SEED) -> list[Instance]:
    """Val persons for the validation loss (``val_samples`` of them drawn with ``seed``; 0:
    all), each with its instance cue on one of its labeled joints, chosen with ``seed``
    and placed exactly (no jitter). With the un-augmented crop of TopDownDataset(train=False)
    this is the training-time cue without its randomness, the same for every model."""
    instances = training_instances(coco)
    rng = np.random.default_rng(seed)
    if 0 < val_samples < len(instances):
        keep = np.sort(rng.choice(len(instances), val_samples, replace=False))
        instances = [instances[i] for i in keep]
    out = []
    for inst in instances:
        kpts = inst.keypoints if inst.keypoints is not None else np.zeros((1, 3))
        labeled = np.flatnonzero(kpts[:, 2] > 0)
        cue = None
        if len(labeled):
            j = labeled[rng.integers(len(labeled))]
            cue = (float(kpts[j, 0]), float(kpts[j, 1]))
        out.append(dataclasses.replace(inst, cue=cue))
    return out


def instances_digest(instances: Sequence[Instance]) -> str:
    """A short fingerprint of which persons (image, box) a run trains on."""
    h = hashlib.sha256()
    for inst in instances:
        h.update(np.asarray([inst.image_id, *inst.bbox], dtype=np.float64).tobytes())
        if inst.keypoints is not None:
            h.update(np.asarray(inst.keypoints, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


class _EpochSampler(Sampler[tuple[int, int]]):
    """Yields (epoch, index) so that loader workers (persistent ones too) draw the
    augmentation of the current epoch; shuffling and sharding come from a DistributedSampler
    (a generator seeded from seed + epoch; one replica in a single process)."""

    def __init__(self, base: DistributedSampler) -> None:
        self.base = base
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.base.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, i) for i in self.base)

    def __len__(self) -> int:
        return len(self.base)


class _EpochDataset(Dataset):
    """TopDownDataset addressed by (epoch, index)."""

    def __init__(self, dataset: TopDownDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


def _collate(items: list[tuple[Any, ...]]) -> Batch:
    """Stack image, target, target weight and cue; the meta dicts are not needed here."""
    return tuple(torch.stack([it[k] for it in items]) for k in range(4))  # type: ignore[return-value]


def _worker_init(_: int) -> None:
    cv2.setNumThreads(1)


def _loader(dataset: Dataset, sampler: Sampler, batch_size: int, workers: int,
            device: torch.device) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=_collate, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0,
                      worker_init_fn=_worker_init if workers > 0 else None)


# --------------------------------------------------------------------------- steps


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast speeds training up on ``device``. On a CPU, PyTorch runs bf16
    convolutions through oneDNN only when it supports bf16 there (AVX-512 and up); on an
    AVX2-only CPU they fall back to a slow reference kernel, tens of times slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class StepSettings:
    """How batches run: device, bf16 autocast, memory format, whether the model takes a cue."""

    device: torch.device
    bf16: bool
    channels_last: bool
    instance_cue: bool

    @classmethod
    def create(cls, pose: PoseParams, model: ModelParams, device: torch.device) -> StepSettings:
        """Settings from params; ``bf16`` only where the device has fast bf16 kernels."""
        bf16 = pose.train.bf16 and bf16_supported(device)
        return cls(device, bf16, pose.train.channels_last, model.instance_cue)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)


def forward_losses(net: nn.Module, batch: Batch, s: StepSettings) -> list[torch.Tensor]:
    """Per-hop JointsMSELoss (fp32) of one batch; their sum is the training loss."""
    images, target, weight, cue = batch
    images = images.to(s.device, non_blocking=True, memory_format=s.memory_format)
    target = target.to(s.device, non_blocking=True)
    weight = weight.to(s.device, non_blocking=True)
    cue_in = (cue.to(s.device, non_blocking=True, memory_format=s.memory_format)
              if s.instance_cue else None)
    with s.autocast():
        outputs = net(images, cue_in)
    return [joints_mse_loss([out.float()], target, weight) for out in outputs]


def train_step(net: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer,
               s: StepSettings) -> list[torch.Tensor]:
    """One optimisation step on ``batch``; returns the detached per-hop losses."""
    losses = forward_losses(net, batch, s)
    optimizer.zero_grad(set_to_none=True)
    torch.stack(losses).sum().backward()
    optimizer.step()
    return [loss.detach() for loss in losses]


@torch.no_grad()
def validation_loss(net: nn.Module, loader: DataLoader, s: StepSettings, info: DistInfo,
                    progress: bool = False) -> float:
    """Mean last-hop loss over the loader (summed over ranks); NaN when it is empty."""
    net.eval()
    total, count = 0.0, 0
    for batch in tqdm(loader, desc="val", leave=False, disable=not progress):
        n = batch[0].shape[0]
        total += float(forward_losses(net, batch, s)[-1]) * n
        count += n
    total, count = _all_reduce_sum([total, count], info, s.device)
    return total / count if count else math.nan


# --------------------------------------------------------------------------- checkpoints


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, fingerprint: dict[str, Any],
                     verbose: bool = True) -> dict[str, Any] | None:
    """The checkpoint at ``path`` when it belongs to this run; None (with a printed note)
    when it was made with other settings. An unreadable file is a DataError."""
    if verbose:  # rank 0: leftovers of a save that was interrupted
        for stale in path.parent.glob(f"{path.name}.tmp*"):
            stale.unlink(missing_ok=True)
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        stored = ckpt["fingerprint"]
    except Exception as exc:
        raise DataError(f"{path}: cannot read the training checkpoint ({exc}); delete it to "
                        "start training afresh") from None
    if stored != fingerprint:
        keys = sorted(k for k in set(stored) | set(fingerprint)
                      if stored.get(k) != fingerprint.get(k))
        if verbose:
            print(f"note: {path} was made with other settings ({', '.join(keys)}); "
                  "training from scratch", flush=True)
        return None
    return ckpt


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (which initial weights a run started from)."""
    sha = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _fingerprint(config: dict[str, Any], pose: PoseParams, digest: str,
                 init: str) -> dict[str, Any]:
    """Everything that decides the trained weights (a checkpoint resumes only when equal)."""
    train = {k: v for k, v in dataclasses.asdict(pose.train).items() if k not in RUNTIME_KEYS}
    return {**config, "data": dataclasses.asdict(pose.data), "train": train,
            "init": init, "instances": digest}


def _plain_state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """A trained model (unwrapped, on the training device) and its per-epoch log."""

    model: HintPose
    config: dict[str, Any]
    log: list[dict[str, float]]
    resumed_epochs: int  # epochs taken from the checkpoint (0: trained from scratch)

    @property
    def hops(self) -> int:
        return int(self.config["hops"])


def log_columns(hops: int) -> list[str]:
    """Columns of the per-epoch TSV (``dvc plots``)."""
    per_hop = [f"train_loss_hop{h + 1}" for h in range(hops)] if hops > 1 else []
    return ["epoch", "lr", "train_loss", *per_hop, "val_loss", "seconds"]


def train_pose_model(
    train_coco: CocoPersons,
    val_coco: CocoPersons | None,
    pose: PoseParams,
    model: ModelParams,
    checkpoint_dir: Path | None = None,
    *,
    progress: bool = True,
    on_epoch_end: EpochCallback | None = None,
    init: str | Path | None = None,
    init_key: str = "pose.pretrained",
) -> TrainResult:
    """Train one pose model with HRNet's recipe (see the module docstring).

    The backbone starts from the HRNet checkpoint ``init`` (named by the parameter
    ``init_key`` in errors; default: ``pose.pretrained``, if set), the HintPose additions
    from zero, so the model starts as that HRNet.

    With ``checkpoint_dir``, rank 0 writes ``last.pt`` after every epoch, and a run finding a
    ``last.pt`` of the same settings continues after its last epoch (one of other settings
    is ignored, with a note). ``on_epoch_end(epoch, row)`` runs after each epoch's
    checkpoint; an exception from it stops training there, as a kill would.
    """
    info = current_dist()
    device = resolve_device(pose.device, info.local_rank)
    tp = pose.train
    if tp.threads > 0:
        torch.set_num_threads(tp.threads)
    steps = StepSettings.create(pose, model, device)
    if tp.bf16 and not steps.bf16 and info.is_main:
        print(f"note: pose.train.bf16 has no effect: no fast bf16 kernels on {device} "
              "(a CPU needs AVX-512); training in fp32", flush=True)

    instances = select_training_instances(train_coco, tp.max_samples, model.seed)
    config = model_config(pose, model, train_coco)
    if init is None and pose.pretrained:
        init = pose.pretrained
    torch.manual_seed(model.seed)
    net = build_model(config)
    if init is not None:
        load_pretrained_backbone(net, init, init_key)
    fingerprint = _fingerprint(config, pose, instances_digest(instances),
                               file_digest(init) if init is not None else "")
    net.to(device=device, memory_format=steps.memory_format)
    # HRNet gives Adam no weight decay; the fused kernel is one pass over all parameters.
    optimizer = torch.optim.Adam(net.parameters(), lr=tp.lr, weight_decay=0.0,
                                 fused=device.type in ("cpu", "cuda"))
    milestones = [max(1, round(f * tp.epochs)) for f in tp.lr_steps]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=tp.lr_factor)

    log: list[dict[str, float]] = []
    start = 0
    ckpt_path = checkpoint_dir / CHECKPOINT if checkpoint_dir is not None else None
    ckpt = (_load_checkpoint(ckpt_path, fingerprint, info.is_main)
            if ckpt_path is not None else None)
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        log, start = list(ckpt["log"]), int(ckpt["epoch"])
        if info.is_main:
            print(f"resuming from {ckpt_path} after epoch {start}/{tp.epochs}", flush=True)
        del ckpt
    if info.distributed:
        dist.barrier()  # every rank has read the checkpoint before rank 0 may replace it

    train_ds = TopDownDataset(train_coco, instances, pose.data, train=True, seed=model.seed,
                              other_boxes=model.instance_cue)
    sampler = _EpochSampler(DistributedSampler(
        range(len(instances)), num_replicas=info.world_size, rank=info.rank, shuffle=True,
        seed=model.seed))
    train_loader = _loader(_EpochDataset(train_ds), sampler, tp.batch_size, tp.workers, device)
    val_loader = None
    if val_coco is not None:
        val_inst = validation_instances(val_coco, tp.val_samples)[info.rank::info.world_size]
        if val_inst or info.distributed:
            val_ds = TopDownDataset(val_coco, val_inst, pose.data, train=False, seed=VAL_SEED)
            val_loader = _loader(val_ds, range(len(val_ds)), tp.batch_size, tp.workers, device)

    train_net: nn.Module = net
    if info.distributed:
        ids = [device.index] if device.type == "cuda" else None
        # A recurrent model with one hop never uses its feedback blocks.
        unused = config["recurrent"] and config["hops"] == 1
        train_net = DistributedDataParallel(net, device_ids=ids, find_unused_parameters=unused)

    hops = config["hops"]
    show = progress and info.is_main
    for epoch in range(start, tp.epochs):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        train_net.train()
        sums = torch.zeros(hops, dtype=torch.float64)
        count = 0
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{tp.epochs}", leave=False,
                   disable=not show)
        for batch in bar:
            losses = train_step(train_net, batch, optimizer, steps)
            n = batch[0].shape[0]
            sums += torch.stack(losses).double().cpu() * n
            count += n
            bar.set_postfix(loss=f"{float(sum(losses)):.3e}", refresh=False)
        scheduler.step()
        train_seconds = time.perf_counter() - t0
        *sums_all, count_all = _all_reduce_sum([*sums.tolist(), count], info, device)
        if info.distributed:
            for buf in net.buffers():  # BN statistics of rank 0, as saved and used later
                dist.broadcast(buf, 0)
        val = (validation_loss(net, val_loader, steps, info, show)
               if val_loader is not None else math.nan)
        hop_losses = [s / max(count_all, 1) for s in sums_all]
        row: dict[str, float] = {"epoch": epoch + 1, "lr": lr, "train_loss": sum(hop_losses)}
        if hops > 1:
            row.update({f"train_loss_hop{h + 1}": v for h, v in enumerate(hop_losses)})
        row["val_loss"] = val
        row["seconds"] = time.perf_counter() - t0
        row["img_s"] = count_all / train_seconds
        log.append(row)
        if info.is_main:
            if ckpt_path is not None:
                ckpt_path.parent.mkdir(parents=True, exist_ok=True)
                _save_atomic({"fingerprint": fingerprint, "epoch": epoch + 1,
                              "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict(), "log": log}, ckpt_path)
            print(format_log_row(row, tp.epochs), flush=True)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    net.eval()
    return TrainResult(net, config, log, start)


def pretrain_backbone(train_coco: CocoPersons, val_coco: CocoPersons | None, pose: PoseParams,
                      checkpoint_dir: Path | None = None, *,
                      progress: bool = True) -> TrainResult:
    """The shared starting point of every pose model: a plain HRNet (``pose.width``) from
    ``pose.pretrained`` (if set) trained with the ``pose.pretrain`` schedule and seed. With
    ``pose.pretrain.epochs`` 0 it is that checkpoint, or a random init, untrained."""
    pre = pose.pretrain
    plain = ModelParams(instance_cue=False, recurrent=False, seed=pre.seed)
    if pre.epochs == 0:
        config = model_config(pose, plain, train_coco)
        torch.manual_seed(pre.seed)
        net = build_model(config)
        if pose.pretrained:
            load_pretrained_backbone(net, pose.pretrained)
        return TrainResult(net.eval(), config, [], 0)
    return train_pose_model(train_coco, val_coco, dataclasses.replace(pose, train=pre), plain,
                            checkpoint_dir, progress=progress)


def save_backbone(path: Path, net: HintPose) -> None:
    """Write the HRNet part of ``net`` as a state dict with the official HRNet names, which
    ``pose.pretrained`` and :func:`train_pose_model`'s ``init`` load."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_atomic(_plain_state(net.backbone), path)


def format_log_row(row: dict[str, float], epochs: int) -> str:
    """The one log line of an epoch."""
    hops = [v for k, v in row.items() if k.startswith("train_loss_hop")]
    per_hop = f" (hops {' '.join(f'{v:.3e}' for v in hops)})" if hops else ""
    return (f"epoch {int(row['epoch'])}/{epochs}  lr {row['lr']:.2e}  "
            f"train {row['train_loss']:.4e}{per_hop}  val {row['val_loss']:.4e}  "
            f"{row['img_s']:.1f} img/s  {row['seconds']:.0f} s")


# --------------------------------------------------------------------------- outputs


def write_log_tsv(path: Path, log: Sequence[dict[str, float]], hops: int) -> None:
    """The per-epoch table as TSV with :func:`log_columns`."""
    cols = log_columns(hops)
    lines = ["\t".join(cols)]
    for row in log:
        lines.append("\t".join(_fmt(row[c]) if c != "epoch" else str(int(row[c]))
                               for c in cols))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def summary_metrics(log: Sequence[dict[str, float]]) -> dict[str, float]:
    """Final losses, epochs, total seconds (training and validation) and the mean over epochs
    of the training throughput."""
    if not log:
        return {"epochs": 0}
    last = log[-1]
    return {
        "epochs": int(last["epoch"]),
        "train_loss": last["train_loss"],
        "val_loss": last["val_loss"],
        "train_seconds": round(sum(r["seconds"] for r in log), 2),
        "img_s": round(sum(r["img_s"] for r in log) / len(log), 2),
    }


def save_pose_model(out_dir: Path, net: nn.Module, config: dict[str, Any]) -> None:
    """Write ``model.pt`` (plain state dict) and ``model.json`` (its structure) to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _save_atomic(_plain_state(net), out_dir / MODEL_WEIGHTS)
    (out_dir / MODEL_CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def load_pose_model(model_dir: Path, device: str | torch.device = "cpu") -> tuple[HintPose,
                                                                                  dict[str, Any]]:
    """Rebuild a model written by :func:`save_pose_model`; returns (model in eval mode,
    config)."""
    model_dir = Path(model_dir)
    config = read_json(model_dir / MODEL_CONFIG, "model description (run the train stage)")
    net = build_model(config)
    weights = model_dir / MODEL_WEIGHTS
    if not weights.is_file():
        raise DataError(f"{weights}: model weights not found")
    try:
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except Exception as exc:
        raise DataError(f"{weights}: does not fit {MODEL_CONFIG} ({str(exc)[:300]})") from None
    return net.to(device).eval(), config
