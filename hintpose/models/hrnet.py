"""HRNet for top-down pose estimation (Sun et al., CVPR 2019), with the official parameter names.

The module tree mirrors the official ``pose_hrnet.PoseHighResolutionNet`` so that its
``state_dict()`` has the same names, order and shapes for every width, and the official COCO
checkpoints (``pose_hrnet_w32_256x192.pth``, ``pose_hrnet_w48_384x288.pth``, ...) load with
``strict=True``. The residual blocks are torchvision's, whose parameter names match.

The network is split into :meth:`HRNet.stem` (1/4 resolution, 64 channels), ``layer1`` (four
Bottlenecks, 256 channels) and :meth:`HRNet.head` (transitions, stages 2-4, final 1x1 conv), so
that HintPose can inject its instance cue after the stem and its feedback after ``layer1``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

__all__ = ["HRNet", "load_pretrained", "checkpoint_state_dict"]

#: Channels of the stem and of the Bottleneck planes in ``layer1`` (output 4 x 64 = 256).
STEM_CHANNELS = 64
LAYER1_CHANNELS = STEM_CHANNELS * Bottleneck.expansion
#: Branches of stages 2, 3 and 4.
STAGE_BRANCHES: tuple[int, ...] = (2, 3, 4)
#: The official HRNet's modules per stage (2, 3, 4) and BasicBlocks per branch.
OFFICIAL_MODULES: tuple[int, ...] = (1, 4, 3)
OFFICIAL_BLOCKS = 4
#: Weight initialisations: HRNet's official N(0, 0.001) for every conv, or He's (kaiming
#: normal, fan-out; torchvision's ResNet) with the final layer still N(0, 0.001).
INITS = ("official", "he")
#: A state-dict entry whose first dimension is the width: used to name a checkpoint's width.
WIDTH_KEY = "stage2.0.branches.0.0.conv1.weight"


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int, relu: bool) -> nn.Sequential:
    """Conv (no bias) + BN (+ ReLU): the building unit of transitions and fuse layers."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _transition(pre: list[int], cur: list[int]) -> nn.ModuleList:
    """Official transition layer: adapt existing branches' channels, and create each new
    (lower-resolution) branch from the last existing one with stride-2 3x3 convs."""
    layers: list[nn.Module] = []
    for i, c_out in enumerate(cur):
        if i < len(pre):
            # nn.Identity has no parameters: same state dict as the official ``None``.
            layers.append(_conv_bn(pre[i], c_out, 3, 1, True) if pre[i] != c_out
                          else nn.Identity())
        else:
            steps = i + 1 - len(pre)
            layers.append(nn.Sequential(*[
                _conv_bn(pre[-1], c_out if k == steps - 1 else pre[-1], 3, 2, True)
                for k in range(steps)
            ]))
    return nn.ModuleList(layers)


class HRModule(nn.Module):
    """One multi-resolution module: parallel BasicBlock branches, then exchange across branches
    (upsample by 1x1 conv + nearest, downsample by stride-2 3x3 convs), sum and ReLU."""

    def __init__(self, channels: list[int], multi_scale_output: bool, blocks: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c, c) for _ in range(blocks)])
            for c in channels
        )
        n = len(channels)
        rows = n if multi_scale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(self._fuse(channels, j, i) for j in range(n)) for i in range(rows)
        )
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _fuse(channels: list[int], j: int, i: int) -> nn.Module:
        """The path from branch ``j`` to output ``i`` (official structure and names)."""
        if j == i:
            return nn.Identity()
        if j > i:  # lower resolution -> higher: 1x1 conv + BN, upsampled in forward
            return _conv_bn(channels[j], channels[i], 1, 1, False)
        steps = i - j  # higher -> lower: (i - j) stride-2 3x3 convs, no ReLU after the last
        return nn.Sequential(*[
            _conv_bn(channels[j], channels[i] if k == steps - 1 else channels[j], 3, 2,
                     k != steps - 1)
            for k in range(steps)
        ])

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        out: list[Tensor] = []
        for i, row in enumerate(self.fuse_layers):
            size = xs[i].shape[-2:]
            y: Tensor | None = None
            for j, layer in enumerate(row):
                z = layer(xs[j])
                if j > i:  # to the size, not by 2^(j-i): also right for odd feature maps
                    z = F.interpolate(z, size=size, mode="nearest")
                y = z if y is None else y + z
            assert y is not None
            out.append(self.relu(y))
        return out


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class HRNet(nn.Module):
    """Pose HRNet: image (N, 3, H, W) -> heatmaps (N, num_joints, H/4, W/4).

    Branch widths are ``width, 2 width, 4 width, 8 width`` (32 and 48 are the official ones).
    ``modules`` (per stage 2, 3, 4) and ``blocks`` (BasicBlocks per branch) default to the
    official network; fewer make a shallower HRNet whose parameter names are a subset of the
    official ones. Stage 1 is always the official one (four 256-channel Bottlenecks), so
    (1, 1, 1) modules of 2 blocks is *not* HRNetV2-W18-Small-v1, which also shrinks stage 1
    to a single, narrower Bottleneck: it is this project's own shallow layout.
    """

    def __init__(self, width: int = 32, num_joints: int = 17,
                 modules: tuple[int, ...] = OFFICIAL_MODULES,
                 blocks: int = OFFICIAL_BLOCKS, init: str = "official") -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        self.width = _check_positive_int("width", width)
        self.num_joints = _check_positive_int("num_joints", num_joints)
        self.blocks = _check_positive_int("blocks", blocks)
        if len(modules) != len(STAGE_BRANCHES):
            raise ValueError(f"modules must give {len(STAGE_BRANCHES)} stages' module counts, "
                             f"got {modules!r}")
        self.modules_per_stage = tuple(_check_positive_int("modules", m) for m in modules)
        # Registration order = official state-dict order.
        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        self.conv2 = nn.Conv2d(STEM_CHANNELS, STEM_CHANNELS, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        downsample = _conv_bn(STEM_CHANNELS, LAYER1_CHANNELS, 1, 1, False)
        self.layer1 = nn.Sequential(
            Bottleneck(STEM_CHANNELS, STEM_CHANNELS, downsample=downsample),
            *[Bottleneck(LAYER1_CHANNELS, STEM_CHANNELS) for _ in range(3)],
        )
        pre = [LAYER1_CHANNELS]
        for index, (count, branches) in enumerate(zip(self.modules_per_stage, STAGE_BRANCHES,
                                                      strict=True), start=1):
            cur = [width * 2**b for b in range(branches)]
            last_stage = index == len(STAGE_BRANCHES)
            setattr(self, f"transition{index}", _transition(pre, cur))
            setattr(self, f"stage{index + 1}", nn.Sequential(*[
                HRModule(cur, not (last_stage and m == count - 1), blocks)
                for m in range(count)
            ]))
            pre = cur
        self.final_layer = nn.Conv2d(width, num_joints, 1)
        self._init_weights(init)

    def _init_weights(self, init: str) -> None:
        """Conv weights N(0, 0.001) (official) or He-normal (``he``; the final layer stays
        N(0, 0.001)), conv biases 0, BN identity. Every conv but the last feeds a BN, so the
        weight scale does not change the function, but under Adam (steps of about lr,
        whatever the scale) it sets each conv's effective step size: tiny official weights
        make early steps huge relative to them (the measured effect: docs/sizing.md)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if init == "he" and m is not self.final_layer:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                else:
                    nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stem(self, x: Tensor) -> Tensor:
        """Two stride-2 3x3 convs: (N, 3, H, W) -> (N, 64, H/4, W/4)."""
        x = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(x)))

    def head(self, x: Tensor) -> Tensor:
        """Everything after ``layer1``: (N, 256, H/4, W/4) -> heatmaps (N, J, H/4, W/4)."""
        ys = [x]
        for index in range(1, len(STAGE_BRANCHES) + 1):
            transition: nn.ModuleList = getattr(self, f"transition{index}")
            # Existing branches pass through (or adapt channels); new ones come from the last.
            xs = [t(ys[i] if i < len(ys) else ys[-1]) for i, t in enumerate(transition)]
            ys = getattr(self, f"stage{index + 1}")(xs)
        return self.final_layer(ys[0])

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layer1(self.stem(x)))


def _width_of(state: Mapping[str, object]) -> int | None:
    value = state.get(WIDTH_KEY)
    return int(value.shape[0]) if isinstance(value, Tensor) and value.dim() > 0 else None


def checkpoint_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a checkpoint's state dict (plain, or nested under ``state_dict``; a DataParallel
    ``module.`` prefix is stripped) with ``weights_only=True``; clear errors naming the file."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint file {file} not found")
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling / zip / EOF errors of a file that is no checkpoint
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ValueError(f"{file} is not a PyTorch weights-only checkpoint "
                         f"({type(exc).__name__}: {reason})") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{file} holds a {type(obj).__name__}, not a (non-empty) state dict")
    state: dict[str, Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise ValueError(f"{file}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                             "not a state dict")
        state[key.removeprefix("module.")] = value
    return state


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Strictly load the checkpoint at ``path`` into ``model`` (an :class:`HRNet`).

    Keys and shapes are compared first so that a mismatch is one ValueError naming the file,
    the first offending keys with both shapes and, when visible, the two HRNet widths.
    """
    file = Path(path)
    state = checkpoint_state_dict(file)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts: list[str] = []
        ckpt_w, model_w = _width_of(state), _width_of(own)
        if ckpt_w is not None and model_w is not None and ckpt_w != model_w:
            parts.append(f"checkpoint is for HRNet-W{ckpt_w}, model is W{model_w}")
        if wrong:
            shown = ", ".join(f"{k} {list(state[k].shape)} vs {list(own[k].shape)}"
                              for k in wrong[:3])
            parts.append(f"{len(wrong)} shape mismatches (checkpoint vs model), e.g. {shown}")
        if missing:
            parts.append(f"{len(missing)} keys missing from the checkpoint, e.g. "
                         + ", ".join(missing[:3]))
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys in the checkpoint, e.g. "
                         + ", ".join(unexpected[:3]))
        raise ValueError(f"{file} does not fit the model: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
