"""params.yaml -> typed, validated settings: one frozen dataclass per section.

The generic validation (types, ranges, unknown keys) is :func:`hintpose.settings.build`; the
dataclass defaults here are the values of the committed ``params.yaml`` (a test keeps them
equal), so a params file may leave out any key. Nothing here changes a result: stages list the
params keys they read, and DVC tracks those values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from hintpose.data.params import DatasetParams
from hintpose.errors import ConfigError
from hintpose.settings import (
    MAX_BATCH,
    MAX_CHANNELS,
    MAX_EPOCHS,
    MAX_IMAGES,
    MAX_INPUT,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_WIDTH,
    MAX_WORKERS,
    build,
    read_yaml,
)
from hintpose.settings import sub as _sub
from hintpose.topdown.conditioning import CUE_KINDS
from hintpose.topdown.params import (  # noqa: F401 (re-exported)
    HRNET_BLOCKS,
    HRNET_MODULES,
    PoseDataParams,
    PoseParams,
    PosePretrainParams,
    PoseTrainParams,
)

# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class DetectorTrainParams:
    """``detector.train``: the schedule of the detector trained on the embedded data."""

    epochs: int = field(default=8, metadata={"min": 1, "max": MAX_EPOCHS})
    batch_size: int = field(default=8, metadata={"min": 1, "max": MAX_BATCH})
    lr: float = field(default=0.004, metadata={"gt": 0})
    #: mmengine's data loader workers (they draw the augmentation: part of the result).
    workers: int = field(default=0, metadata={"min": 0, "max": MAX_WORKERS})
    #: Validate (person box AP on ``val_images`` val images) every this many epochs.
    val_interval: int = field(default=1, metadata={"min": 1, "max": MAX_EPOCHS})
    val_images: int = field(default=100, metadata={"min": 0, "max": MAX_IMAGES})


@dataclass(frozen=True)
class DetectorParams:
    """``detector``: which detector, and how its boxes are filtered."""

    #: An MMDetection 3.x config: a path in the repository, or one shipped inside mmdet
    #: (``mmdet::htc/htc_x101-64x4d-dconv-c3-c5_fpn_ms-400-1400-16xb1-20e_coco.py``, or the
    #: same without the ``mmdet::`` prefix when no such local file exists).
    config: str = "configs/detector/fcos_person.py"
    #: Weights for ``config``; empty: train the config on the train split.
    checkpoint: str = ""
    seed: int = field(default=1, metadata={"min": 0, "max": MAX_SEED})
    #: The one box filter of the pipeline (detect writes only the boxes that pass it): persons
    #: scoring below ``score_thr`` or with a box side under ``min_box_size`` pixels (the
    #: paper: 32) are dropped.
    score_thr: float = field(default=0.2, metadata={"min": 0, "max": 1})
    min_box_size: float = field(default=32.0, metadata={"min": 0, "max": 8192})
    batch_size: int = field(default=8, metadata={"min": 1, "max": MAX_BATCH})
    train: DetectorTrainParams = _sub(DetectorTrainParams)


@dataclass(frozen=True)
class ModelParams:
    """One entry of ``models``: which HintPose additions a pose model has, and its seed."""

    #: The cue input (hintpose.topdown.conditioning): ``none`` (plain HRNet) or ``point``,
    #: the report's instance cue.
    cue: str = field(default="none", metadata={"choices": CUE_KINDS})
    recurrent: bool = False
    seed: int = field(default=0, metadata={"min": 0, "max": MAX_SEED})


def _default_models() -> dict[str, ModelParams]:
    """The report's line-up: a plain HRNet and two seeds of each HintPose variant."""
    models = {"baseline": ModelParams(seed=1)}
    for name, cue, rr in (("ic", "point", False), ("rr", "none", True),
                          ("icrr", "point", True)):
        for suffix, seed in (("a", 1), ("b", 2)):
            models[f"{name}_{suffix}"] = ModelParams(cue=cue, recurrent=rr, seed=seed)
    return models


@dataclass(frozen=True)
class EvalParams:
    """``eval``: top-down inference on detector and GT boxes, HRNet's post-processing."""

    #: Keypoint scores above this count in the instance score (HRNet's in_vis_thre).
    in_vis_thr: float = field(default=0.2, metadata={"min": 0, "max": 1})
    #: OKS threshold of the per-image OKS-NMS; ``soft_nms`` selects soft OKS-NMS instead.
    nms_thr: float = field(default=0.9, metadata={"gt": 0, "max": 1})
    soft_nms: bool = False
    #: Heatmap decoder (hintpose.topdown.codec.DECODERS): HRNet's quarter-pixel step
    #: (``hrnet``, the report) or DARK's Taylor step (``dark``).
    decoder: str = field(default="dark", metadata={"choices": ("hrnet", "dark")})
    #: Cue-aware scoring (beyond the report; MIPNet: 0.5): per box, the pose that best spans
    #: the box keeps its score, each other cue's pose is multiplied by this before the NMS
    #: (hintpose.topdown.postprocess). Cue models' results are written under both protocols
    #: (the report's: every cue's pose alike); 1 writes the report's only.
    neighbour_decay: float = field(default=0.5, metadata={"min": 0, "max": 1})
    #: HRNet's flip test (average with the mirrored input's heatmaps, shifted one pixel);
    #: off in the default, where it would double the inference time.
    flip_test: bool = False
    batch_size: int = field(default=32, metadata={"min": 1, "max": MAX_BATCH})
    workers: int = field(default=1, metadata={"min": 0, "max": MAX_WORKERS})
    #: Crowded GT pairs of the val split on which hintpose.topdown.cue_probe asks whether a model
    #: follows its cue (0: every pair).
    cue_probe_pairs: int = field(default=300, metadata={"min": 0, "max": MAX_SAMPLES})


@dataclass(frozen=True)
class MultiPoseNetTrainParams:
    """``multiposenet.train``: Adam with step decay on whole train images, augmented."""

    epochs: int = field(default=4, metadata={"min": 1, "max": MAX_EPOCHS})
    batch_size: int = field(default=16, metadata={"min": 1, "max": MAX_BATCH})
    lr: float = field(default=2e-3, metadata={"gt": 0})
    #: Fractions of the schedule where the lr is multiplied by lr_factor.
    lr_steps: tuple[float, ...] = field(default=(0.75,), metadata={"gt": 0, "lt": 1})
    lr_factor: float = field(default=0.1, metadata={"gt": 0, "max": 1})
    #: Use at most this many train images (0: all of them).
    max_images: int = field(default=0, metadata={"min": 0, "max": MAX_IMAGES})
    #: Val images for the per-epoch validation loss (0: all of them).
    val_images: int = field(default=64, metadata={"min": 0, "max": MAX_IMAGES})
    #: Augmentation: scale (std, clipped to 1 +- it), rotation (std in degrees, clipped to
    #: twice it, applied with rotation_prob) and horizontal flip.
    scale_factor: float = field(default=0.25, metadata={"min": 0, "lt": 1})
    rotation_factor: float = field(default=20.0, metadata={"min": 0, "max": 180})
    rotation_prob: float = field(default=0.5, metadata={"min": 0, "max": 1})
    flip: bool = True
    workers: int = field(default=1, metadata={"min": 0, "max": MAX_WORKERS})


@dataclass(frozen=True)
class MultiPoseNetParams:
    """``multiposenet``: the bottom-up keypoint subnet whose heatmap peaks become cues."""

    #: ResNet trunk: depth (10 and torchvision's 18, 34, 50, 101, 152) and base channels
    #: (64 is torchvision's ResNet; ``pretrained`` then loads its ImageNet state dict).
    depth: int = field(default=18, metadata={"choices": (10, 18, 34, 50, 101, 152)})
    width: int = field(default=16, metadata={"min": 1, "max": MAX_WIDTH})
    fpn_channels: int = field(default=32, metadata={"min": 1, "max": MAX_CHANNELS})
    head_channels: int = field(default=32, metadata={"min": 1, "max": MAX_CHANNELS})
    #: Optional torchvision ResNet state dict (a local file; nothing is downloaded).
    pretrained: str = ""
    #: Whole images are letterboxed into this input (multiples of 32); maps are at 1/4.
    input_width: int = field(default=160, metadata={"min": 32, "max": MAX_INPUT})
    input_height: int = field(default=128, metadata={"min": 32, "max": MAX_INPUT})
    #: Gaussian sigma of the joint targets, in heatmap pixels.
    sigma: float = field(default=1.0, metadata={"gt": 0, "max": 100})
    #: Targets only from visible joints (v=2): a hidden joint lies on another person.
    visible_only: bool = True
    seed: int = field(default=1, metadata={"min": 0, "max": MAX_SEED})
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
    min_distance: float = field(default=8.0, metadata={"min": 0, "max": 8192})
    max_per_box: int = field(default=3, metadata={"min": 1, "max": 100})
    #: Average the heatmaps with those of the mirrored image.
    flip_test: bool = True
    batch_size: int = field(default=16, metadata={"min": 1, "max": MAX_BATCH})


@dataclass(frozen=True)
class EnsembleParams:
    """``ensemble``: the heatmap ensemble of infer@<model> outputs. The report's (its six
    models, equal weights) is the ensemble_report stage's, whatever these say."""

    #: Entries of ``models`` whose heatmaps are averaged per (box, cue) instance; beyond the
    #: report: the default was chosen on a dev split (docs/ensemble-posefix-experiments.md).
    members: tuple[str, ...] = ("rr_a", "rr_b", "icrr_a", "icrr_b")
    #: One weight per member (empty: equal weights).
    weights: tuple[float, ...] = field(default=(2.0, 2.0, 1.0, 1.0), metadata={"gt": 0})
    #: Instances read, averaged and decoded at a time (bounds the memory used).
    chunk: int = field(default=256, metadata={"min": 1, "max": 65536})

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

    epochs: int = field(default=2, metadata={"min": 1, "max": MAX_EPOCHS})
    batch_size: int = field(default=32, metadata={"min": 1, "max": MAX_BATCH})
    lr: float = field(default=5e-4, metadata={"gt": 0})
    #: Fractions of the schedule where the lr is multiplied by lr_factor (PoseFix: 90, 120/140).
    lr_steps: tuple[float, ...] = field(default=(0.64, 0.86), metadata={"gt": 0, "lt": 1})
    lr_factor: float = field(default=0.1, metadata={"gt": 0, "max": 1})
    #: Weight of the soft-argmax coordinate L1 loss next to the heatmap cross-entropy.
    coord_weight: float = field(default=1.0, metadata={"min": 0})
    #: Use at most this many training persons (0: all of them).
    max_samples: int = field(default=3000, metadata={"min": 0, "max": MAX_SAMPLES})
    #: Val persons (with input poses synthesized from a fixed seed) for the per-epoch
    #: validation loss (0: all of them).
    val_samples: int = field(default=256, metadata={"min": 0, "max": MAX_SAMPLES})
    scale_factor: float = field(default=0.3, metadata={"min": 0, "lt": 1})
    rotation_factor: float = field(default=40.0, metadata={"min": 0, "max": 180})
    rotation_prob: float = field(default=0.6, metadata={"min": 0, "max": 1})
    flip: bool = True
    workers: int = field(default=1, metadata={"min": 0, "max": MAX_WORKERS})


#: Joint groups of ``posefix.error_mix`` (face, upper body, lower body), in table order.
ERROR_MIX_GROUPS = ("face", "upper", "lower")


@dataclass(frozen=True)
class PosefixParams:
    """``posefix``: the PoseFix refiner (network, crops, input-pose maps) and its use."""

    #: The refiner's network: ``resnet`` (PoseFix: a torchvision ResNet trunk and
    #: deconvolution head, from scratch here) or ``hrnet`` (beyond the report): the pose
    #: models' HRNet (``pose`` width, modules, blocks) from the pretrain stage's weights, the
    #: input pose entering after its stem, heatmaps decoded as the pose models' (eval.decoder).
    backbone: str = field(default="resnet", metadata={"choices": ("resnet", "hrnet")})
    #: ResNet trunk (``resnet``): torchvision depth and base channels (64: the standard one).
    depth: int = field(default=18, metadata={"choices": (18, 34, 50, 101, 152)})
    width: int = field(default=32, metadata={"min": 4, "max": MAX_WIDTH})
    #: Channels of the stride-2 deconvolutions of the head (PoseFix: 256), and how many
    #: (PoseFix: 3, output maps at 1/4 of the input; 4: at 1/2, beyond the report).
    head_channels: int = field(default=64, metadata={"min": 1, "max": MAX_CHANNELS})
    head_layers: int = field(default=3, metadata={"choices": (3, 4, 5)})
    #: Input-pose skip, not in the paper (0: without, as PoseFix): the output logits add this
    #: learnable scale x the log of the input pose maps pooled to the output, so the untrained
    #: network returns its input and a short training learns corrections, not how to copy.
    input_skip: float = field(default=1.0, metadata={"min": 0})
    #: Network input (multiples of 32 for ``resnet``, of 4 for ``hrnet``); output maps at 1/4.
    input_width: int = field(default=96, metadata={"min": 32, "max": MAX_INPUT})
    input_height: int = field(default=128, metadata={"min": 32, "max": MAX_INPUT})
    #: Input-pose Gaussian sigma at a 256-high input (PoseFix: 7), scaled to input_height.
    pose_sigma: float = field(default=7.0, metadata={"gt": 0, "max": 1000})
    #: Crop: the input pose's extent x box_extent (at least min_box pixels), then the input's
    #: aspect ratio and x box_padding (PoseFix: 1.2, 20, 1.25).
    box_extent: float = field(default=1.2, metadata={"min": 1.0, "max": 100})
    min_box: float = field(default=20.0, metadata={"min": 1.0, "max": 8192})
    box_padding: float = field(default=1.25, metadata={"min": 1.0, "max": 100})
    seed: int = field(default=1, metadata={"min": 0, "max": MAX_SEED})
    #: Refinement: average with the mirrored input's prediction (PoseFix: on; here +0.001 AP
    #: for twice the time); instances per batch.
    flip_test: bool = False
    batch_size: int = field(default=64, metadata={"min": 1, "max": MAX_BATCH})
    #: Refine the input poses scoring at least this; the others pass through unchanged.
    #: (PoseFix refines scores > 0; rescoring gives 0 to a pose with no joint above
    #: eval.in_vis_thr, which a refiner may still fix, so by default every pose is refined.)
    min_score: float = field(default=0.0, metadata={"min": 0})
    #: Beyond the report (0: PoseFix, every joint takes the refiner's estimate): keep an input
    #: joint where the refiner's output map at it is at least this share of the map's peak
    #: (the refiner agrees), so refining cannot drag a joint it does not dispute (0.3: chosen
    #: on a dev split, docs/ensemble-posefix-experiments.md).
    keep_ratio: float = field(default=0.3, metadata={"min": 0, "max": 1})
    #: Error synthesis (beyond the report; empty: PoseFix's tables): per joint group (face,
    #: upper, lower) the probabilities of good, jitter, inversion, swap and miss, measured on
    #: a pipeline's predictions on a dev split (scripts/fit_posefix_errors.py).
    error_mix: dict[str, tuple[float, ...]] = field(default_factory=dict)
    train: PosefixTrainParams = _sub(PosefixTrainParams)

    def __post_init__(self) -> None:
        multiple = 32 if self.backbone == "resnet" else 4
        for key in ("input_width", "input_height"):
            if getattr(self, key) % multiple:
                raise ConfigError(f"{key} must be a multiple of {multiple} with backbone "
                                  f"{self.backbone}, got {getattr(self, key)}")
        if self.error_mix:
            if sorted(self.error_mix) != sorted(ERROR_MIX_GROUPS):
                raise ConfigError(f"error_mix must give the groups "
                                  f"{', '.join(ERROR_MIX_GROUPS)}, got "
                                  f"{', '.join(map(str, self.error_mix))}")
            for group, row in self.error_mix.items():
                if len(row) != 5 or min(row) < 0 or not sum(row) > 0:
                    raise ConfigError(f"error_mix.{group} must be 5 probabilities (good, "
                                      f"jitter, inversion, swap, miss), >= 0 with a positive sum, "
                                      f"got {list(row)}")


@dataclass(frozen=True)
class RuntimeParams:
    """``runtime``: how every network runs, in training and inference alike. Only speed
    depends on these, except ``bf16``, which rounds activations to bfloat16 and so changes
    the numbers slightly (it is used only where the device has fast bf16 kernels)."""

    device: str = field(default="auto", metadata={"choices": ("auto", "cpu", "cuda")})
    bf16: bool = True
    channels_last: bool = True
    #: Local processes of the pose stages (pretrain, train@<model> under DDP, with
    #: ``pose.*.batch_size`` per process; infer@<model> splits its boxes between them): on
    #: GPUs one per GPU. MultiPoseNet, PoseFix and the detector run in one process.
    procs: int = field(default=2, metadata={"min": 1, "max": 64})
    #: Intra-op threads per process; 0: torch's default, or with ``procs`` > 1 an equal share
    #: of the cores.
    threads: int = field(default=0, metadata={"min": 0, "max": 1024})


@dataclass(frozen=True)
class BoxRemovalParams:
    """``box_removal``: where a cue model should win. AP of ``models`` with detector boxes as
    a random share (``fractions``, drawn with ``seed``, the same boxes for every model) of the
    boxes is dropped, and how many GT persons left without a box a pose still finds
    (hintpose.topdown.box_removal)."""

    #: Empty: every model of ``models`` with neither addition or both (baseline, I.C.+R.R.).
    models: tuple[str, ...] = ()
    fractions: tuple[float, ...] = field(default=(0.0, 0.2, 0.4), metadata={"min": 0, "lt": 1})
    seed: int = field(default=0, metadata={"min": 0, "max": MAX_SEED})


@dataclass(frozen=True)
class Params:
    """The whole of params.yaml."""

    runtime: RuntimeParams = _sub(RuntimeParams)
    dataset: DatasetParams = _sub(DatasetParams)
    detector: DetectorParams = _sub(DetectorParams)
    pose: PoseParams = _sub(PoseParams)
    models: dict[str, ModelParams] = field(default_factory=_default_models)
    eval: EvalParams = _sub(EvalParams)
    multiposenet: MultiPoseNetParams = _sub(MultiPoseNetParams)
    cues: CuesParams = _sub(CuesParams)
    ensemble: EnsembleParams = _sub(EnsembleParams)
    posefix: PosefixParams = _sub(PosefixParams)
    box_removal: BoxRemovalParams = _sub(BoxRemovalParams)

    def box_removal_models(self) -> list[str]:
        """``box_removal.models``, or when empty the models with neither addition or both."""
        if self.box_removal.models:
            return list(self.box_removal.models)
        return [n for n, m in self.models.items() if (m.cue != "none") == m.recurrent]

    def __post_init__(self) -> None:
        for name in self.models:
            if not re.fullmatch(r"[A-Za-z0-9_]+", name):
                raise ConfigError(f"models.{name}: a model name may use only letters, digits "
                                  "and _ (it names folders and DVC stages)")
        if not self.models:
            raise ConfigError("models must name at least one pose model")
        unknown = [m for m in self.box_removal.models if m not in self.models]
        if unknown:
            raise ConfigError(f"box_removal.models: {', '.join(unknown)} not under models "
                              f"(known: {', '.join(self.models)})")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file; every problem is a ConfigError naming the key path."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such params file")
    data = read_yaml(path)
    try:
        return build(Params, data)
    except ConfigError as exc:
        raise ConfigError(f"{path.name}: {exc}") from None
