"""params.yaml -> typed, validated settings.

Every settings section is a frozen dataclass whose fields carry their valid range in
``metadata`` (``min``/``max`` inclusive, ``gt``/``lt`` exclusive, ``choices``). One generic
loader walks the YAML mapping against those dataclasses, so an unknown key, a wrong type or an
out-of-range value stops with one message naming the key path, e.g.
``params.yaml: pose.data.sigma must be > 0, got -1``.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from hintpose.data.synthetic import SyntheticConfig
from hintpose.errors import ConfigError

T = TypeVar("T")


def _check_range(value: Any, meta: typing.Mapping[str, Any], where: str) -> None:
    checks = (
        ("min", lambda v, b: v >= b, ">="),
        ("max", lambda v, b: v <= b, "<="),
        ("gt", lambda v, b: v > b, ">"),
        ("lt", lambda v, b: v < b, "<"),
    )
    items = value if isinstance(value, tuple | list) else (value,)
    for key, ok, sign in checks:
        if key in meta and not all(ok(v, meta[key]) for v in items):
            raise ConfigError(f"{where} must be {sign} {meta[key]}, got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        choices = ", ".join(repr(c) for c in meta["choices"])
        raise ConfigError(f"{where} must be one of {choices}, got {value!r}")


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the type hint ``tp`` and return it in that type."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where} must be a list of {len(args)} values, got {value!r}")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in pairs)
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return {
            _convert(k, key_tp, f"{where} key"): _convert(v, val_tp, _join(where, str(k)))
            for k, v in value.items()
        }
    raise TypeError(f"unsupported settings type {tp!r} at {where}")  # a programming error


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def build(cls: type[T], data: Any, where: str = "") -> T:
    """Build the settings dataclass ``cls`` from a YAML mapping, validating every key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the file'} must be a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(
            f"{_join(where, unknown[0])} is not a known key (known: {', '.join(fields)})"
        )
    kwargs = {}
    for name, f in fields.items():
        key = _join(where, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{key} is missing")
            continue
        value = _convert(data[name], hints[name], key)
        _check_range(value, f.metadata, key)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # cross-field checks in __post_init__ name keys of `cls`
        raise ConfigError(_join(where, str(exc))) from None


def _sub(cls: type) -> Any:
    return field(default_factory=cls)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class CocoImport:
    """A real COCO-format person-keypoint dataset to import instead of the synthetic one."""

    train_annotations: str = ""
    train_images: str = ""
    val_annotations: str = ""
    val_images: str = ""
    verify_images: str = field(default="decode", metadata={"choices": ("decode", "exists")})


@dataclass(frozen=True)
class DatasetParams:
    """``dataset``: where the images and keypoint annotations come from."""

    kind: str = field(default="synthetic", metadata={"choices": ("synthetic", "coco")})
    seed: int = field(default=1, metadata={"min": 0})
    train_images: int = field(default=1500, metadata={"min": 1})
    val_images: int = field(default=300, metadata={"min": 1})
    synthetic: SyntheticConfig = _sub(SyntheticConfig)
    coco: CocoImport = _sub(CocoImport)


#: The official HRNet layout (hintpose.models.hrnet.OFFICIAL_MODULES / OFFICIAL_BLOCKS,
#: repeated here so that validating params never imports torch; a test keeps them equal).
HRNET_MODULES: tuple[int, int, int] = (1, 4, 3)
HRNET_BLOCKS = 4


@dataclass(frozen=True)
class PoseDataParams:
    """``pose.data``: top-down crops, targets, instance cues and HRNet's augmentation."""

    input_width: int = field(default=96, metadata={"min": 16})
    input_height: int = field(default=128, metadata={"min": 16})
    #: Gaussian sigma of the heatmap targets at a 64x48 heatmap; scaled with the heatmap height.
    sigma: float = field(default=2.0, metadata={"gt": 0})
    #: Instance-cue Gaussian sigma and position jitter (std), in input pixels.
    cue_sigma: float = field(default=4.0, metadata={"gt": 0})
    cue_jitter: float = field(default=2.0, metadata={"min": 0})
    #: Instance-cue models only: the probability that a training crop is framed by the box of
    #: another person overlapping the target (IoU >= 0.1), while target and cue stay on the
    #: target. Without it a crop's own box already names the person, and the cue is redundant.
    other_box_prob: float = field(default=0.0, metadata={"min": 0, "max": 1})
    box_padding: float = field(default=1.25, metadata={"min": 1.0})
    scale_factor: float = field(default=0.35, metadata={"min": 0, "lt": 1})
    rotation_factor: float = field(default=45.0, metadata={"min": 0, "max": 180})
    rotation_prob: float = field(default=0.6, metadata={"min": 0, "max": 1})
    flip: bool = True
    half_body_prob: float = field(default=0.3, metadata={"min": 0, "max": 1})
    half_body_min_joints: int = field(default=8, metadata={"min": 2})


@dataclass(frozen=True)
class PoseTrainParams:
    """``pose.train``: HRNet's COCO recipe (Adam, step decay) with sizes for this machine."""

    epochs: int = field(default=20, metadata={"min": 1})
    batch_size: int = field(default=32, metadata={"min": 1})
    lr: float = field(default=1e-3, metadata={"gt": 0})
    #: Fractions of the schedule where the lr is multiplied by lr_factor (HRNet: 170/210, 200/210).
    lr_steps: tuple[float, ...] = field(default=(0.81, 0.95), metadata={"gt": 0, "lt": 1})
    lr_factor: float = field(default=0.1, metadata={"gt": 0, "max": 1})
    #: Use at most this many training persons (0: all of them).
    max_samples: int = field(default=0, metadata={"min": 0})
    #: Persons of the val split used for the per-epoch validation loss (0: all of them).
    val_samples: int = field(default=256, metadata={"min": 0})
    workers: int = field(default=2, metadata={"min": 0})
    #: Local training processes (DDP, see hintpose.launch); ``batch_size`` is per process. On
    #: GPUs: one per GPU. Ignored when the stage already runs under torchrun.
    procs: int = field(default=1, metadata={"min": 1})
    #: Intra-op threads (torch.set_num_threads) per process; 0: torch's default, or with
    #: ``procs`` > 1 an equal share of the cores.
    threads: int = field(default=0, metadata={"min": 0})
    #: bf16 autocast and channels_last memory format (CPU and CUDA).
    bf16: bool = True
    channels_last: bool = True


@dataclass(frozen=True)
class PosePretrainParams(PoseTrainParams):
    """``pose.pretrain``: one HRNet trained once on the train split, the shared starting point
    of every pose model (the stand-in for the report's pretrained initialisation)."""

    #: 0: no pretraining; the models start from ``pose.pretrained`` (or one random init).
    epochs: int = field(default=6, metadata={"min": 0})
    seed: int = field(default=0, metadata={"min": 0})


@dataclass(frozen=True)
class PoseParams:
    """``pose``: settings shared by every top-down pose model."""

    width: int = field(default=16, metadata={"min": 1})
    #: HRNet modules in stages 2, 3, 4 and BasicBlocks per branch: official (1, 4, 3) and 4;
    #: fewer give a shallower, faster HRNet (1, 1, 1 and 2: HRNetV2-W18-Small-v1's layout).
    #: ``pretrained`` checkpoints need the official layout.
    modules: tuple[int, int, int] = field(default=HRNET_MODULES, metadata={"min": 1})
    blocks: int = field(default=HRNET_BLOCKS, metadata={"min": 1})
    #: Conv initialisation from scratch: ``official`` N(0, 0.001) or ``he`` (kaiming normal),
    #: which learns faster on a short schedule (see hintpose.models.hrnet).
    init: str = field(default="official", metadata={"choices": ("official", "he")})
    #: Hops of recurrent refinement (used by models with ``recurrent: true``).
    hops: int = field(default=3, metadata={"min": 1})
    #: Optional official HRNet checkpoint (pose_hrnet_w32_256x192.pth, ...): the pretrain
    #: stage starts from it.
    pretrained: str = ""
    device: str = field(default="auto", metadata={"choices": ("auto", "cpu", "cuda")})
    data: PoseDataParams = _sub(PoseDataParams)
    train: PoseTrainParams = _sub(PoseTrainParams)
    pretrain: PosePretrainParams = _sub(PosePretrainParams)

    def __post_init__(self) -> None:
        official = (HRNET_MODULES, HRNET_BLOCKS)
        if self.pretrained and (tuple(self.modules), self.blocks) != official:
            raise ConfigError(f"modules {list(self.modules)} and blocks {self.blocks} must be the "
                              f"official HRNet layout {list(HRNET_MODULES)} and {HRNET_BLOCKS} "
                              f"when pretrained is set ({self.pretrained})")


@dataclass(frozen=True)
class DetectorTrainParams:
    """``detector.train``: the schedule of the detector trained on the embedded data."""

    epochs: int = field(default=7, metadata={"min": 1})
    batch_size: int = field(default=8, metadata={"min": 1})
    lr: float = field(default=0.004, metadata={"gt": 0})
    workers: int = field(default=0, metadata={"min": 0})
    #: Validate (person box AP on ``val_images`` val images) every this many epochs.
    val_interval: int = field(default=1, metadata={"min": 1})
    val_images: int = field(default=100, metadata={"min": 0})
    #: Intra-op threads (torch.set_num_threads); 0 leaves torch's default.
    threads: int = field(default=0, metadata={"min": 0})


@dataclass(frozen=True)
class DetectorParams:
    """``detector``: which detector, and how its boxes are filtered."""

    #: An MMDetection 3.x config: a path in the repository, or one shipped inside mmdet
    #: (``mmdet::htc/htc_x101-64x4d-dconv-c3-c5_fpn_ms-400-1400-16xb1-20e_coco.py``, or the
    #: same without the ``mmdet::`` prefix when no such local file exists).
    config: str = "configs/detector/fcos_person.py"
    #: Weights for ``config``; empty: train the config on the train split.
    checkpoint: str = ""
    seed: int = field(default=1, metadata={"min": 0})
    device: str = field(default="auto", metadata={"choices": ("auto", "cpu", "cuda")})
    score_thr: float = field(default=0.2, metadata={"min": 0, "max": 1})
    #: Boxes narrower or lower than this (pixels) are dropped.
    min_box_size: float = field(default=32.0, metadata={"min": 0})
    batch_size: int = field(default=8, metadata={"min": 1})
    train: DetectorTrainParams = _sub(DetectorTrainParams)


@dataclass(frozen=True)
class ModelParams:
    """One entry of ``models``: which HintPose additions a pose model has, and its seed."""

    instance_cue: bool = False
    recurrent: bool = False
    seed: int = field(default=0, metadata={"min": 0})


def _default_models() -> dict[str, ModelParams]:
    """The report's line-up: a plain HRNet and two seeds of each HintPose variant."""
    models = {"baseline": ModelParams(seed=1)}
    for name, ic, rr in (("ic", True, False), ("rr", False, True), ("icrr", True, True)):
        for suffix, seed in (("a", 1), ("b", 2)):
            models[f"{name}_{suffix}"] = ModelParams(instance_cue=ic, recurrent=rr, seed=seed)
    return models


@dataclass(frozen=True)
class EvalParams:
    """``eval``: top-down inference on detector and GT boxes, HRNet's post-processing."""

    #: Detector boxes narrower or lower than this many pixels are dropped (the paper: 32).
    min_box_size: float = field(default=32.0, metadata={"min": 0})
    #: Detector boxes scoring below this are dropped (HRNet's published configs: 0).
    score_thr: float = field(default=0.0, metadata={"min": 0, "max": 1})
    #: Keypoint scores above this count in the instance score (HRNet's in_vis_thre).
    in_vis_thr: float = field(default=0.2, metadata={"min": 0, "max": 1})
    #: OKS threshold of the per-image OKS-NMS; ``soft_nms`` selects soft OKS-NMS instead.
    nms_thr: float = field(default=0.9, metadata={"gt": 0, "max": 1})
    soft_nms: bool = False
    #: HRNet's flip test (average with the mirrored input's heatmaps, shifted one pixel).
    flip_test: bool = True
    batch_size: int = field(default=32, metadata={"min": 1})
    workers: int = field(default=1, metadata={"min": 0})
    #: Local processes the boxes are split over (see hintpose.launch); on GPUs one per GPU.
    procs: int = field(default=1, metadata={"min": 1})
    #: Intra-op threads per process; 0: torch's default, or with ``procs`` > 1 an equal share
    #: of the cores.
    threads: int = field(default=0, metadata={"min": 0})
    #: Crowded GT pairs of the val split on which hintpose.cue_probe asks whether a model
    #: follows its cue (0: every pair).
    cue_probe_pairs: int = field(default=300, metadata={"min": 0})


@dataclass(frozen=True)
class MultiPoseNetTrainParams:
    """``multiposenet.train``: Adam with step decay on whole train images, augmented."""

    epochs: int = field(default=4, metadata={"min": 1})
    batch_size: int = field(default=16, metadata={"min": 1})
    lr: float = field(default=2e-3, metadata={"gt": 0})
    #: Fractions of the schedule where the lr is multiplied by lr_factor.
    lr_steps: tuple[float, ...] = field(default=(0.75,), metadata={"gt": 0, "lt": 1})
    lr_factor: float = field(default=0.1, metadata={"gt": 0, "max": 1})
    #: Use at most this many train images (0: all of them).
    max_images: int = field(default=0, metadata={"min": 0})
    #: Val images for the per-epoch validation loss (0: all of them).
    val_images: int = field(default=64, metadata={"min": 0})
    #: Augmentation: scale (std, clipped to 1 +- it), rotation (std in degrees, clipped to
    #: twice it, applied with rotation_prob) and horizontal flip.
    scale_factor: float = field(default=0.25, metadata={"min": 0, "lt": 1})
    rotation_factor: float = field(default=20.0, metadata={"min": 0, "max": 180})
    rotation_prob: float = field(default=0.5, metadata={"min": 0, "max": 1})
    flip: bool = True
    workers: int = field(default=1, metadata={"min": 0})
    #: Intra-op threads (torch.set_num_threads); 0 leaves torch's default.
    threads: int = field(default=0, metadata={"min": 0})
    #: bf16 autocast (only where the device has fast bf16 kernels) and channels_last.
    bf16: bool = True
    channels_last: bool = True


@dataclass(frozen=True)
class MultiPoseNetParams:
    """``multiposenet``: the bottom-up keypoint subnet whose heatmap peaks become cues."""

    #: ResNet trunk: depth (10 and torchvision's 18, 34, 50, 101, 152) and base channels
    #: (64 is torchvision's ResNet; ``pretrained`` then loads its ImageNet state dict).
    depth: int = field(default=18, metadata={"choices": (10, 18, 34, 50, 101, 152)})
    width: int = field(default=16, metadata={"min": 1})
    fpn_channels: int = field(default=32, metadata={"min": 1})
    head_channels: int = field(default=32, metadata={"min": 1})
    #: Optional torchvision ResNet state dict (a local file; nothing is downloaded).
    pretrained: str = ""
    #: Whole images are letterboxed into this input (multiples of 32); maps are at 1/4.
    input_width: int = field(default=160, metadata={"min": 32})
    input_height: int = field(default=128, metadata={"min": 32})
    #: Gaussian sigma of the joint targets, in heatmap pixels.
    sigma: float = field(default=1.0, metadata={"gt": 0})
    #: Targets only from visible joints (v=2): a hidden joint lies on another person.
    visible_only: bool = True
    seed: int = field(default=1, metadata={"min": 0})
    device: str = field(default="auto", metadata={"choices": ("auto", "cpu", "cuda")})
    train: MultiPoseNetTrainParams = _sub(MultiPoseNetTrainParams)

    def __post_init__(self) -> None:
        for key in ("input_width", "input_height"):
            if getattr(self, key) % 32:
                raise ConfigError(f"{key} must be a multiple of 32, got {getattr(self, key)}")


@dataclass(frozen=True)
class CuesParams:
    """``cues``: instance cues per detection box from MultiPoseNet's heatmap peaks."""

    #: Which cues go into data/cues/val.json: MultiPoseNet peaks or the oracle (GT joints).
    source: str = field(default="multiposenet", metadata={"choices": ("multiposenet", "gt")})
    #: Heatmap the peaks come from: ``max`` (the max over joints) or a keypoint name.
    joint: str = "max"
    #: Peaks are local maxima (max-pool) above this heatmap value ...
    threshold: float = field(default=0.05, metadata={"min": 0})
    #: ... at least this many image pixels apart (greedy, best first).
    min_distance: float = field(default=8.0, metadata={"min": 0})
    max_per_box: int = field(default=3, metadata={"min": 1})
    #: Average the heatmaps with those of the mirrored image.
    flip_test: bool = True
    batch_size: int = field(default=16, metadata={"min": 1})


@dataclass(frozen=True)
class EnsembleParams:
    """``ensemble``: the heatmap ensemble of infer@<model> outputs (the report's six models)."""

    #: Entries of ``models`` whose flip-tested heatmaps are averaged per (box, cue) instance.
    members: tuple[str, ...] = ("ic_a", "ic_b", "rr_a", "rr_b", "icrr_a", "icrr_b")
    #: One weight per member (empty: equal weights).
    weights: tuple[float, ...] = field(default=(), metadata={"gt": 0})
    #: Instances read, averaged and decoded at a time (bounds the memory used).
    chunk: int = field(default=256, metadata={"min": 1})

    def __post_init__(self) -> None:
        if not self.members:
            raise ConfigError("members must name at least one model")
        repeated = sorted({m for m in self.members if self.members.count(m) > 1})
        if repeated:
            raise ConfigError(f"members lists {', '.join(repeated)} more than once")
        if self.weights and len(self.weights) != len(self.members):
            raise ConfigError(f"weights must give one weight per member ({len(self.members)}), "
                              f"got {len(self.weights)}")


@dataclass(frozen=True)
class PosefixTrainParams:
    """``posefix.train``: PoseFix's recipe (Adam, step decay, scale/rotation/flip) sized here."""

    epochs: int = field(default=3, metadata={"min": 1})
    batch_size: int = field(default=32, metadata={"min": 1})
    lr: float = field(default=5e-4, metadata={"gt": 0})
    #: Fractions of the schedule where the lr is multiplied by lr_factor (PoseFix: 90, 120/140).
    lr_steps: tuple[float, ...] = field(default=(0.64, 0.86), metadata={"gt": 0, "lt": 1})
    lr_factor: float = field(default=0.1, metadata={"gt": 0, "max": 1})
    #: Weight of the soft-argmax coordinate L1 loss next to the heatmap cross-entropy.
    coord_weight: float = field(default=1.0, metadata={"min": 0})
    #: Use at most this many training persons (0: all of them).
    max_samples: int = field(default=0, metadata={"min": 0})
    #: Val persons (with input poses synthesized from a fixed seed) for the per-epoch
    #: validation loss (0: all of them).
    val_samples: int = field(default=256, metadata={"min": 0})
    scale_factor: float = field(default=0.3, metadata={"min": 0, "lt": 1})
    rotation_factor: float = field(default=40.0, metadata={"min": 0, "max": 180})
    rotation_prob: float = field(default=0.6, metadata={"min": 0, "max": 1})
    flip: bool = True
    workers: int = field(default=1, metadata={"min": 0})
    #: Intra-op threads (torch.set_num_threads); 0 leaves torch's default.
    threads: int = field(default=0, metadata={"min": 0})
    #: bf16 autocast (only where the device has fast bf16 kernels) and channels_last.
    bf16: bool = True
    channels_last: bool = True


@dataclass(frozen=True)
class PosefixParams:
    """``posefix``: the PoseFix refiner (network, crops, input-pose maps) and its use."""

    #: ResNet trunk: torchvision depth and base channels (64 is the standard ResNet).
    depth: int = field(default=18, metadata={"choices": (18, 34, 50, 101, 152)})
    width: int = field(default=32, metadata={"min": 4})
    #: Channels of the three stride-2 deconvolutions of the head (PoseFix: 256).
    head_channels: int = field(default=64, metadata={"min": 1})
    #: Input-pose skip, not in the paper (0: without, as PoseFix): the output logits add this
    #: learnable scale x the log of the input pose maps pooled to the output, so the untrained
    #: network returns its input and a short training learns corrections, not how to copy.
    input_skip: float = field(default=1.0, metadata={"min": 0})
    #: Network input (multiples of 32); output maps are at 1/4.
    input_width: int = field(default=96, metadata={"min": 32})
    input_height: int = field(default=128, metadata={"min": 32})
    #: Input-pose Gaussian sigma at a 256-high input (PoseFix: 7), scaled to input_height.
    pose_sigma: float = field(default=7.0, metadata={"gt": 0})
    #: Crop: the input pose's extent x box_extent (at least min_box pixels), then the input's
    #: aspect ratio and x box_padding (PoseFix: 1.2, 20, 1.25).
    box_extent: float = field(default=1.2, metadata={"min": 1.0})
    min_box: float = field(default=20.0, metadata={"min": 1.0})
    box_padding: float = field(default=1.25, metadata={"min": 1.0})
    seed: int = field(default=1, metadata={"min": 0})
    device: str = field(default="auto", metadata={"choices": ("auto", "cpu", "cuda")})
    #: Refinement: average with the mirrored input's prediction; instances per batch.
    flip_test: bool = True
    batch_size: int = field(default=64, metadata={"min": 1})
    #: Refine the input poses scoring at least this; the others pass through unchanged.
    #: (PoseFix refines scores > 0; rescoring gives 0 to a pose with no joint above
    #: eval.in_vis_thr, which a refiner may still fix, so by default every pose is refined.)
    min_score: float = field(default=0.0, metadata={"min": 0})
    train: PosefixTrainParams = _sub(PosefixTrainParams)

    def __post_init__(self) -> None:
        for key in ("input_width", "input_height"):
            if getattr(self, key) % 32:
                raise ConfigError(f"{key} must be a multiple of 32, got {getattr(self, key)}")


@dataclass(frozen=True)
class Params:
    """The whole of params.yaml."""

    dataset: DatasetParams = _sub(DatasetParams)
    detector: DetectorParams = _sub(DetectorParams)
    pose: PoseParams = _sub(PoseParams)
    models: dict[str, ModelParams] = field(default_factory=_default_models)
    eval: EvalParams = _sub(EvalParams)
    multiposenet: MultiPoseNetParams = _sub(MultiPoseNetParams)
    cues: CuesParams = _sub(CuesParams)
    ensemble: EnsembleParams = _sub(EnsembleParams)
    posefix: PosefixParams = _sub(PosefixParams)

    def __post_init__(self) -> None:
        for name in self.models:
            if not re.fullmatch(r"[A-Za-z0-9_]+", name):
                raise ConfigError(f"models.{name}: a model name may use only letters, digits "
                                  "and _ (it names folders and DVC stages)")
        if not self.models:
            raise ConfigError("models must name at least one pose model")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file; every problem is a ConfigError naming the key path."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such params file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    try:
        return build(Params, data)
    except ConfigError as exc:
        raise ConfigError(f"{path.name}: {exc}") from None
