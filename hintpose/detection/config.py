"""Person detection on MMDetection: train a small detector, or use any mmdet config + checkpoint.

A detector is stored as a folder (the ``train_detector`` stage's output):

- ``config.py``: the complete, resolved MMDetection config (no ``_base_`` left), so the
  ``detect`` stage runs exactly the model that was trained or validated;
- ``model.pt``: the state dict (trained here), loaded with ``weights_only=True``; for a
  user-supplied checkpoint the file is not copied, its path and SHA-256 are recorded instead;
- ``detector.json``: class names, the person label, where the weights come from.

mmdet, mmengine and mmcv are imported lazily (``require_mmdet``) so that the rest of the
library works without them and a missing mmcv build is one clear message.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from hintpose.config import DetectorParams
from hintpose.data.coco import CocoPersons
from hintpose.errors import ConfigError, DataError
from hintpose.io import file_digest, read_json, write_atomic

SETUP_HINT = "run `bash scripts/setup.sh` (it builds mmcv with its compiled ops)"
MODEL_FILE, CONFIG_FILE, META_FILE = "model.pt", "config.py", "detector.json"


# --------------------------------------------------------------------------- mmdet access


@contextlib.contextmanager
def mmdet_warnings_off() -> Iterator[None]:
    """Ignore, while the block runs, the Python warnings that mmengine, mmdet and mmcv raise
    about their own dependencies (pkg_resources, torch.meshgrid's indexing): noise to a user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"(mmengine|mmdet|mmcv|pycocotools)(\.|$)")
        warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated")
        warnings.filterwarnings("ignore", message=r"torch\.meshgrid: in an upcoming release")
        yield


def require_mmdet() -> None:
    """Import mmcv's compiled ops, mmengine and mmdet, registering mmdet's modules."""
    try:
        with mmdet_warnings_off():
            import mmcv.ops  # noqa: F401
            import mmdet  # noqa: F401
            from mmdet.utils import register_all_modules
    except ImportError as exc:
        raise ConfigError(f"MMDetection is not usable ({exc}); {SETUP_HINT}") from None
    register_all_modules(init_default_scope=True)


def mmdet_config_dir() -> Path:
    import mmdet

    return Path(mmdet.__file__).parent / ".mim" / "configs"


def resolve_config(path: str) -> Path:
    """A config path as given, or relative to the configs shipped inside mmdet."""
    name = path.removeprefix("mmdet::")
    local = Path(path)
    if not path.startswith("mmdet::") and local.is_file():
        return local
    shipped = mmdet_config_dir() / name
    if shipped.is_file():
        return shipped
    raise ConfigError(f"detector.config: no such MMDetection config {path!r} (neither a file "
                      f"nor one shipped in mmdet under {mmdet_config_dir()})")


def load_config(path: str) -> Any:
    """Read an MMDetection config (mmengine ``Config``); unreadable files are a ConfigError."""
    require_mmdet()
    from mmengine.config import Config

    file = resolve_config(path)
    try:
        with contextlib.redirect_stdout(io.StringIO()), mmdet_warnings_off():
            return Config.fromfile(str(file))
    except Exception as exc:  # mmengine raises many types for a broken config
        raise ConfigError(f"{file}: not a readable MMDetection config ({exc})") from None


def _dataset_cfgs(cfg: Any) -> Iterator[Any]:
    for key in ("test_dataloader", "val_dataloader", "train_dataloader"):
        ds = (cfg.get(key) or {}).get("dataset")
        while ds is not None:  # unwrap RepeatDataset / ClassBalancedDataset / ...
            yield ds
            ds = ds.get("dataset")
        yield from ((cfg.get(key) or {}).get("dataset") or {}).get("datasets") or []


def class_names(cfg: Any, checkpoint_meta: dict[str, Any] | None = None) -> list[str]:
    """The detector's class names: the config's dataset metainfo, else the checkpoint's
    metadata, else the registered dataset type's own METAINFO."""
    for ds in _dataset_cfgs(cfg):
        classes = (ds.get("metainfo") or {}).get("classes")
        if classes:
            return [str(c) for c in classes]
    meta = checkpoint_meta or {}
    classes = (meta.get("dataset_meta") or {}).get("classes") or meta.get("CLASSES")
    if classes:
        return [str(c) for c in classes]
    from mmdet.registry import DATASETS

    for ds in _dataset_cfgs(cfg):
        cls = DATASETS.get(ds.get("type")) if isinstance(ds.get("type"), str) else None
        if cls is not None and getattr(cls, "METAINFO", {}).get("classes"):
            return [str(c) for c in cls.METAINFO["classes"]]
    return []


def person_label(classes: Sequence[str], where: str) -> int:
    """Index of the person class (COCO's ``person``, CrowdPose/OCHuman style ``Person``...)."""
    for i, name in enumerate(classes):
        if name.lower() in ("person", "pedestrian", "human"):
            return i
    shown = ", ".join(classes[:8]) + (" ..." if len(classes) > 8 else "")
    raise ConfigError(f"{where}: the detector has no person class (classes: {shown or 'none'})")


# --------------------------------------------------------------------------- training


def _scale_schedule(schedulers: list[dict[str, Any]], old: int, new: int) -> list[dict]:
    """Stretch epoch-based schedulers written for ``old`` epochs to ``new`` epochs."""
    out = []
    for s in copy.deepcopy(schedulers):
        if s.get("by_epoch", True):
            for key in ("begin", "end", "T_max"):
                if key in s and isinstance(s[key], int):
                    s[key] = max(1, round(s[key] * new / old)) if s[key] else 0
            if "milestones" in s:
                s["milestones"] = [max(1, round(m * new / old)) for m in s["milestones"]]
        out.append(s)
    return out


def training_config(
    cfg: Any, train: CocoPersons, val: CocoPersons, params: DetectorParams, work_dir: Path,
) -> Any:
    """``cfg`` set up to train on ``train`` and validate on (part of) ``val`` with the
    schedule of ``params.train``; the person class only."""
    cfg = copy.deepcopy(cfg)
    cfg.model = _single_class(cfg.model.to_dict() if hasattr(cfg.model, "to_dict") else cfg.model)
    tp = params.train
    metainfo = {"classes": ("person",)}

    def dataset(split: CocoPersons, pipeline: Any, indices: int | None) -> dict[str, Any]:
        ds = {"type": "CocoDataset", "data_root": "", "metainfo": metainfo,
              "ann_file": str(split.annotation_file.resolve()),
              "data_prefix": {"img": str(split.image_root.resolve()) + os.sep},
              "pipeline": pipeline, "backend_args": None}
        if indices:
            ds["indices"] = indices
        return ds

    val_ds = dataset(val, cfg.val_dataloader.dataset.pipeline, tp.val_images or None)
    train_ds = dataset(train, cfg.train_dataloader.dataset.pipeline, None)
    train_ds["filter_cfg"] = {"filter_empty_gt": False, "min_size": 0}
    cfg.train_dataloader.dataset = train_ds
    cfg.train_dataloader.batch_size = tp.batch_size
    cfg.val_dataloader.dataset = val_ds
    cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.num_workers = tp.workers
        loader.persistent_workers = False
        loader.pin_memory = False
    evaluator = {"type": "CocoMetric", "ann_file": str(val.annotation_file.resolve()),
                 "metric": "bbox", "format_only": False, "backend_args": None}
    cfg.val_evaluator = evaluator
    cfg.test_evaluator = evaluator
    old_epochs = int(cfg.train_cfg.get("max_epochs", tp.epochs))
    cfg.train_cfg = {"type": "EpochBasedTrainLoop", "max_epochs": tp.epochs,
                     "val_interval": tp.val_interval}
    cfg.param_scheduler = _scale_schedule(list(cfg.get("param_scheduler") or []), old_epochs,
                                          tp.epochs)
    cfg.optim_wrapper.optimizer.lr = tp.lr
    cfg.randomness = {"seed": params.seed, "deterministic": False, "diff_rank_seed": False}
    cfg.work_dir = str(work_dir)
    cfg.load_from = None
    # MMEngine's own resume: a checkpoint after every epoch (the last one kept) in work_dir,
    # and a run that finds one there continues after its epoch (see train.train_detector).
    cfg.resume = True
    cfg.default_hooks.checkpoint = {"type": "CheckpointHook", "interval": 1, "by_epoch": True,
                                    "max_keep_ckpts": 1, "save_last": True}
    cfg.launcher = "none"
    return cfg


def _single_class(node: Any) -> Any:
    """A model config with every ``num_classes`` set to 1 (cascade heads included)."""
    if isinstance(node, dict):
        return {k: 1 if k == "num_classes" else _single_class(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return type(node)(_single_class(v) for v in node)
    return node


# --------------------------------------------------------------------------- storage


def save_detector(out_dir: Path, cfg: Any, meta: dict[str, Any],
                  model: torch.nn.Module | None = None) -> None:
    """Write a detector folder (see the module docstring); weights only for ``model``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if model is not None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        write_atomic(out_dir / MODEL_FILE, lambda p: torch.save(state, p))
    write_atomic(out_dir / CONFIG_FILE, lambda p: p.write_text(cfg.pretty_text))
    text = json.dumps(meta, indent=2) + "\n"
    write_atomic(out_dir / META_FILE, lambda p: p.write_text(text))


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict and metadata of an MMDetection checkpoint, loaded with weights_only=True."""
    if not path.is_file():
        raise ConfigError(f"detector.checkpoint: {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(
            f"{path}: cannot be loaded as plain tensors with weights_only=True ({exc}); "
            "re-save just its weights, e.g. torch.save({'state_dict': ckpt['state_dict']}, ...)"
        ) from None
    if not isinstance(ckpt, dict):
        raise ConfigError(f"{path}: not a checkpoint (expected a dict of tensors)")
    state = ckpt.get("state_dict", ckpt)
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else {}
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path}: holds no state dict of tensors")
    return state, meta


def build_model(cfg: Any, state: dict[str, torch.Tensor] | None, where: str) -> torch.nn.Module:
    """Build the config's detector and load ``state`` into it (strictly)."""
    require_mmdet()
    from mmdet.registry import MODELS

    try:
        with mmdet_warnings_off():
            model = MODELS.build(copy.deepcopy(cfg.model))
    except Exception as exc:
        raise ConfigError(f"{where}: the config's model cannot be built ({exc})") from None
    if state is not None:
        state = {k.removeprefix("module."): v for k, v in state.items()}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[:3]
            raise ConfigError(f"{where}: the checkpoint does not match the config's model "
                              f"({' '.join(s.strip() for s in first)})") from None
    model.cfg = cfg
    return model.eval()


def load_detector(folder: Path, device: torch.device) -> tuple[torch.nn.Module, int]:
    """The model of a detector folder on ``device`` and its person label."""
    require_mmdet()
    from mmengine.config import Config

    meta_file = folder / META_FILE
    if not meta_file.is_file():
        raise DataError(f"{folder}: no {META_FILE} (run the train_detector stage)")
    meta = read_json(meta_file, "detector record")
    try:
        with mmdet_warnings_off():
            cfg = Config.fromfile(str(folder / CONFIG_FILE))
        weights = Path(meta["checkpoint"]) if meta["weights"] == "checkpoint" else None
        label = int(meta["person_label"])
    except Exception as exc:  # a hand-edited or truncated folder
        raise DataError(f"{folder}: not a complete detector folder ({exc!r}); run the "
                        "train_detector stage") from None
    if weights is None:
        weights = folder / MODEL_FILE
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DataError(f"{weights}: cannot load the detector weights ({exc})") from None
    else:
        if not weights.is_file() or file_digest(weights) != meta.get("checkpoint_sha256"):
            raise DataError(f"{weights}: missing or changed since train_detector recorded it; "
                            "run `dvc repro -f train_detector`")
        state, _ = read_checkpoint(weights)
    return build_model(cfg, state, str(weights)).to(device), label
