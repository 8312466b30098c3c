"""``pose`` settings: the top-down pose models' network, crops, targets and schedules.

Part of params.yaml's validated settings (``hintpose.config.Params.pose``); they live here,
next to the code that reads them, so that the pose modules need not import the whole config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hintpose import settings as lim
from hintpose.errors import ConfigError
from hintpose.settings import sub as _sub

#: The official HRNet layout (hintpose.models.hrnet.OFFICIAL_MODULES / OFFICIAL_BLOCKS,
#: repeated here so that validating params never imports torch; a test keeps them equal).
HRNET_MODULES: tuple[int, int, int] = (1, 4, 3)
HRNET_BLOCKS = 4
#: The pretraining's branches (``pose.pretrain.branches``): name -> (cue type, recurrent),
#: and the file of each in the pretrain stage's folder (a HintPose state dict).
BRANCHES: dict[str, tuple[str, bool]] = {"cue": ("point", False), "recurrent": ("none", True),
                                         "cue_recurrent": ("point", True)}
BRANCH_WEIGHTS = {name: f"{name}.pt" for name in BRANCHES}


def branch_for(cue: str, recurrent: bool, branches: tuple[str, ...]) -> str | None:
    """The branch a model of this kind starts from (None: the plain HRNet): a cue +
    recurrent model from ``cue_recurrent``, else from ``cue``; a cue model from ``cue``; a
    recurrent model without a cue from ``recurrent``."""
    if cue != "none":
        kinds = ("cue_recurrent", "cue") if recurrent else ("cue",)
    else:
        kinds = ("recurrent",) if recurrent else ()
    return next((k for k in kinds if k in branches), None)


@dataclass(frozen=True)
class PoseDataParams:
    """``pose.data``: top-down crops, targets, instance cues and HRNet's augmentation."""

    input_width: int = field(default=72, metadata={"min": 16, "max": lim.MAX_INPUT})
    input_height: int = field(default=96, metadata={"min": 16, "max": lim.MAX_INPUT})
    #: Gaussian sigma of the heatmap targets at a 64x48 heatmap; scaled with the heatmap height.
    sigma: float = field(default=3.0, metadata={"gt": 0, "max": 100})
    #: Instance-cue Gaussian sigma and position jitter (std), in input pixels.
    cue_sigma: float = field(default=4.0, metadata={"gt": 0, "max": lim.MAX_INPUT})
    cue_jitter: float = field(default=2.0, metadata={"min": 0, "max": lim.MAX_INPUT})
    #: Instance-cue models only: the probability that a training crop is framed by the box of
    #: another person overlapping the target (IoU >= 0.1), while target and cue stay on the
    #: target. Without it a crop's own box already names the person, and the cue is redundant.
    other_box_prob: float = field(default=0.0, metadata={"min": 0, "max": 1})
    #: Beyond the report (empty: the report, every hop's target at ``sigma``): coarse to fine
    #: targets for recurrent models, one factor per hop (``pose.hops`` of them): hop h is
    #: trained on Gaussians of ``sigma`` x factor h, so the later hops have a job, to sharpen.
    hop_sigma_scales: tuple[float, ...] = field(default=(), metadata={"gt": 0, "max": 100})
    #: Beyond the report (empty: the report, every hop's loss weighted 1): recurrent models'
    #: loss weight per hop (``pose.hops`` of them), e.g. MSPN's (0.25, 0.5, 1): the later hops
    #: carry the loss, hop 1 may leave errors for them.
    hop_weights: tuple[float, ...] = field(default=(), metadata={"min": 0, "max": 100})
    #: Beyond the report (false: the report): recurrent models feed each hop's heatmaps back
    #: without their gradient (Iterative Error Feedback, AlphaFold's recycling).
    feedback_detach: bool = False
    #: Beyond the report (0: the report): in training, each joint's fed-back heatmap is
    #: corrupted with this probability, as errors the later hops learn to fix: moved by
    #: ``feedback_shift`` heatmap pixels (a jitter) or, for a joint with a mirror twin, swapped
    #: with it (an inversion), half the time each (hintpose.topdown.feedback).
    feedback_corrupt: float = field(default=0.0, metadata={"min": 0, "max": 1})
    feedback_shift: tuple[float, float] = field(default=(1.5, 4.0),
                                                metadata={"min": 0, "max": 100})
    #: Beyond the report (1: the report's paired training as MIPNet): with paired cues, the
    #: probability that a crop's second sample is cued on the neighbour (else on the target
    #: again), and the loss weight of the neighbour's joints.
    pair_prob: float = field(default=1.0, metadata={"min": 0, "max": 1})
    neighbour_weight: float = field(default=1.0, metadata={"min": 0, "max": 1})
    box_padding: float = field(default=1.25, metadata={"min": 1.0, "max": 100})
    #: Heatmap targets (hintpose.topdown.codec.TARGETS): ``hrnet`` centres the Gaussian on the
    #: joint's nearest heatmap pixel (the report); ``unbiased`` (DARK) on the joint itself.
    target: str = field(default="unbiased", metadata={"choices": ("hrnet", "unbiased")})
    #: HRNet's augmentation (official: 0.35, 45 degrees with probability 0.6, half body 0.3);
    #: the defaults here learn faster on a schedule of minutes.
    scale_factor: float = field(default=0.25, metadata={"min": 0, "lt": 1})
    rotation_factor: float = field(default=30.0, metadata={"min": 0, "max": 180})
    rotation_prob: float = field(default=0.0, metadata={"min": 0, "max": 1})
    flip: bool = True
    half_body_prob: float = field(default=0.0, metadata={"min": 0, "max": 1})
    half_body_min_joints: int = field(default=8, metadata={"min": 2, "max": 1000})


@dataclass(frozen=True)
class PoseTrainParams:
    """``pose.train``: HRNet's COCO recipe (Adam, step decay) sized for this machine: each
    model of ``models`` fine-tuned from the pretrained HRNet."""

    epochs: int = field(default=2, metadata={"min": 1, "max": lim.MAX_EPOCHS})
    #: Per process (``runtime.procs`` of them under DDP).
    batch_size: int = field(default=8, metadata={"min": 1, "max": lim.MAX_BATCH})
    lr: float = field(default=5e-4, metadata={"gt": 0})
    #: Fractions of the schedule where the lr is multiplied by lr_factor (HRNet: 170/210, 200/210).
    lr_steps: tuple[float, ...] = field(default=(0.5,), metadata={"gt": 0, "lt": 1})
    lr_factor: float = field(default=0.1, metadata={"gt": 0, "max": 1})
    #: Beyond the report (1: the report): the lr of the blocks HintPose adds to HRNet (instance
    #: cue, recurrent hint and update) x this; they start at zero on a trained HRNet.
    added_lr_mult: float = field(default=1.0, metadata={"gt": 0, "max": 1000})
    #: Use at most this many training persons per epoch (0: all of them).
    max_samples: int = field(default=1200, metadata={"min": 0, "max": lim.MAX_SAMPLES})
    #: Persons of the val split used for the per-epoch validation loss (0: all of them).
    val_samples: int = field(default=128, metadata={"min": 0, "max": lim.MAX_SAMPLES})
    #: Val images whose GT-box AP is measured after every epoch: the learning curve
    #: (hintpose.topdown.val_ap; 0: none).
    val_images: int = field(default=30, metadata={"min": 0, "max": lim.MAX_IMAGES})
    #: Instance-cue models: crowded val pairs of the cue probe (hintpose.topdown.cue_probe)
    #: run after every epoch, the learning curve of the cue (0: none).
    probe_pairs: int = field(default=100, metadata={"min": 0, "max": lim.MAX_SAMPLES})
    workers: int = field(default=1, metadata={"min": 0, "max": lim.MAX_WORKERS})
    #: Beyond the report (0, 0: HRNet's crops, centred on the box): std of a training crop's
    #: centre offset in box widths and heights (clipped at 2 std), as a detector's boxes err
    #: (the committed detector on a dev split: 0.14, 0.06; metrics/details/box_errors.json).
    #: Per schedule: the fine-tunes move their crops, the pretraining keeps them centred.
    center_jitter: tuple[float, float] = field(default=(0.14, 0.06), metadata={"min": 0,
                                                                              "max": 1})
    #: Instance-cue models only (beyond the report; false: the report's cue training): every
    #: training crop is used twice in one step, as MIPNet trains, cued on its person and on
    #: the nearest neighbour (targets: that person, that neighbour; ``pose.data.pair_prob``,
    #: ``neighbour_weight``); see TopDownDataset. Per schedule: the cue branch learns to read
    #: the cue from the pairs, the fine-tunes train as the report.
    paired_cues: bool = False


@dataclass(frozen=True)
class PosePretrainParams(PoseTrainParams):
    """``pose.pretrain``: one HRNet trained once on the train split, the shared starting point
    of every pose model (the stand-in for the report's pretrained initialisation)."""

    #: 0: no pretraining; the models start from ``pose.pretrained`` (or one random init).
    epochs: int = field(default=8, metadata={"min": 0, "max": lim.MAX_EPOCHS})
    lr: float = field(default=2e-3, metadata={"gt": 0})
    lr_steps: tuple[float, ...] = field(default=(0.75,), metadata={"gt": 0, "lt": 1})
    max_samples: int = field(default=0, metadata={"min": 0, "max": lim.MAX_SAMPLES})
    val_images: int = field(default=50, metadata={"min": 0, "max": lim.MAX_IMAGES})
    #: HRNet's centred crops: the shared start learns the person in the middle of the box
    #: (off-centre pretraining crops cost 1.9 AP with GT boxes; docs/instance-cue-experiments.md).
    center_jitter: tuple[float, float] = field(default=(0.0, 0.0), metadata={"min": 0,
                                                                            "max": 1})
    paired_cues: bool = True
    #: Beyond the report (0: the report, cue models start from the plain HRNet with a cue
    #: block that adds nothing): the branches. The pretrained HRNet trains ``cue_epochs``
    #: more epochs twice (lr, then x ``lr_factor`` for the second half): alone, and as a copy
    #: with the instance-cue input on the crops ``pose.data`` says (paired cues; the cue
    #: block's lr x ``added_lr_mult``). Cue models start from the copy, the others from the
    #: plain HRNet: every model has had the same number of pretraining steps.
    cue_epochs: int = field(default=2, metadata={"min": 0, "max": lim.MAX_EPOCHS})
    #: The branches trained for ``cue_epochs`` next to the plain one, each the start of the
    #: models of its kind: ``cue`` (the cue models; I.C.+R.R. too when there is no
    #: ``cue_recurrent``), ``recurrent`` (R.R.: beyond the report, their feedback blocks learn
    #: in the branch) and ``cue_recurrent`` (I.C.+R.R.). Models of a kind without a branch
    #: start from the plain HRNet.
    branches: tuple[str, ...] = ("cue", "recurrent", "cue_recurrent")
    seed: int = field(default=0, metadata={"min": 0, "max": lim.MAX_SEED})


@dataclass(frozen=True)
class PoseParams:
    """``pose``: settings shared by every top-down pose model."""

    width: int = field(default=16, metadata={"min": 1, "max": lim.MAX_WIDTH})
    #: HRNet modules in stages 2, 3, 4 and BasicBlocks per branch: official (1, 4, 3) and 4.
    #: The default (1, 1, 1) and 2 is a shallow HRNet of this project (stage 1 as the official
    #: one, four 256-channel Bottlenecks; stages 2-4 one module each, two BasicBlocks per
    #: branch), faster per step (see docs/sizing.md). ``pretrained`` needs the official layout.
    modules: tuple[int, int, int] = field(default=(1, 1, 1), metadata={"min": 1, "max": 16})
    blocks: int = field(default=2, metadata={"min": 1, "max": 16})
    #: Conv initialisation from scratch: ``official`` N(0, 0.001) or ``he`` (kaiming normal,
    #: this project's), which learns faster on a short schedule (see hintpose.models.hrnet).
    init: str = field(default="he", metadata={"choices": ("official", "he")})
    #: Hops of recurrent refinement (used by models with ``recurrent: true``).
    hops: int = field(default=3, metadata={"min": 1, "max": 16})
    #: Optional official HRNet checkpoint (pose_hrnet_w32_256x192.pth, ...): the pretrain
    #: stage starts from it.
    pretrained: str = ""
    data: PoseDataParams = _sub(PoseDataParams)
    train: PoseTrainParams = _sub(PoseTrainParams)
    pretrain: PosePretrainParams = _sub(PosePretrainParams)

    def __post_init__(self) -> None:
        if self.pretrain.cue_epochs and not self.pretrain.epochs:
            raise ConfigError(f"pretrain.cue_epochs ({self.pretrain.cue_epochs}) needs "
                              "pretrain.epochs > 0: the branches continue a pretraining (with "
                              "pretrain.epochs 0 set cue_epochs to 0 as well)")
        branches = self.pretrain.branches
        unknown = [b for b in branches if b not in BRANCHES]
        if unknown or len(set(branches)) != len(branches):
            raise ConfigError(f"pretrain.branches must be distinct names of {', '.join(BRANCHES)}, "
                              f"got {list(branches)}")
        scales = self.data.hop_sigma_scales
        if scales and len(scales) != self.hops:
            raise ConfigError(f"data.hop_sigma_scales gives {len(scales)} factors; hops is "
                              f"{self.hops} (one factor per hop, or none)")
        weights = self.data.hop_weights
        if weights and (len(weights) != self.hops or not any(weights)):
            raise ConfigError(f"data.hop_weights gives {len(weights)} weights; hops is "
                              f"{self.hops} (one weight per hop, not all 0, or none)")
        shift = self.data.feedback_shift
        if shift[0] > shift[1]:
            raise ConfigError(f"data.feedback_shift must be [low, high] with low <= high, got "
                              f"{list(shift)}")
        official = (HRNET_MODULES, HRNET_BLOCKS)
        if self.pretrained and (tuple(self.modules), self.blocks) != official:
            raise ConfigError(f"modules {list(self.modules)} and blocks {self.blocks} must be the "
                              f"official HRNet layout {list(HRNET_MODULES)} and {HRNET_BLOCKS} "
                              f"when pretrained is set ({self.pretrained})")
