"""What tells a pose model which person of its crop to estimate: the cue types, in one place.

A cue type (``models.<name>.cue``) is one :class:`Conditioning` subclass, registered in
:data:`CUES`. It owns every step of its cue's life:

- ``train_point``: the cue drawn for a training crop (from the target's joints in input
  pixels and their weights);
- ``eval_point``: the cue of an inference instance (its given point, moved into the crop);
- ``render``: the network input made from it, (C, H, W) float32 with ``channels`` channels;
- ``flip``: the input of the mirrored crop (HRNet's flip test);
- ``network_block`` / ``merge``: how the network takes it in (a block added to HRNet, its
  parameter prefix ``weight_prefix``), starting as a no-op on a trained HRNet;
- ``uses_crowd_training``: whether training frames crops by other persons' boxes and pairs
  each crop with a neighbour-cued copy (``pose.data.other_box_prob``, ``pose.*.paired_cues``); and
  ``probe``: whether the cue probe (hintpose.topdown.cue_probe) applies.

Three kinds exist: ``none`` (plain HRNet), ``point``, the report's instance cue: a Gaussian
map at one point (training: a labeled joint of the target, jittered), and ``disk`` (beyond the
report): the same point drawn as a hard disk. Arrays here are numpy
(the loader side); the network side imports torch only when a network is built, so that
validating params never loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor, nn


class Conditioning:
    """No cue (``none``): the network sees the image only."""

    name: ClassVar[str] = "none"
    #: Input channels of the rendered cue (0: the network takes no cue input).
    channels: ClassVar[int] = 0
    #: Parameter-name prefix of the network block (empty: no block).
    weight_prefix: ClassVar[str] = ""

    @property
    def takes_input(self) -> bool:
        """Whether the network has a cue input (and ``forward`` needs a cue)."""
        return self.channels > 0

    @property
    def uses_crowd_training(self) -> bool:
        """Other persons' boxes and neighbour-cued pairs in training (cue models only)."""
        return self.takes_input

    @property
    def probe(self) -> bool:
        """Whether the cue probe measures this model's following of its cue."""
        return self.takes_input

    # ----------------------------------------------------------------- loader side (numpy)
    def train_point(self, rng: np.random.Generator, joints: np.ndarray, weight: np.ndarray,
                    input_size: tuple[int, int], jitter: float) -> np.ndarray | None:
        """The cue of a training crop (input pixels), from the target's ``joints`` (K, 2)
        and ``weight`` (K, 1); None without a cue. May draw from ``rng``."""
        return None

    def eval_point(self, point: tuple[float, float] | None, m: np.ndarray,
                   input_size: tuple[int, int]) -> np.ndarray | None:
        """The cue of an inference instance (``point`` in image pixels, or None) in input
        pixels, through the crop's affine ``m``."""
        return None

    def render(self, point: np.ndarray | None, input_size: tuple[int, int],
               sigma: float) -> np.ndarray | None:
        """The network input of a cue, (channels, H, W) float32; None without a cue."""
        return None

    # ----------------------------------------------------------------- network side (torch)
    def flip(self, cue: Tensor) -> Tensor:
        """The cue input of the horizontally mirrored crop (N, C, H, W)."""
        return cue.flip(3)

    def network_block(self, stem_channels: int) -> nn.Module | None:
        """The block that merges the cue into the stem features (None: no block)."""
        return None

    def merge(self, block: nn.Module, features: Tensor, cue: Tensor) -> Tensor:
        """The stem ``features`` (N, C, H/4, W/4) with the cue (N, channels, H, W) merged."""
        return features


def _zero_conv(c_in: int, c_out: int, kernel: int) -> nn.Conv2d:
    """A conv whose weight and bias start at zero: the block it ends adds nothing at first."""
    from torch import nn

    conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def conv_bn_relu(c_in: int, c_out: int, kernel: int) -> list[nn.Module]:
    """Conv (no bias), BatchNorm, ReLU: the layers HintPose's added blocks are made of."""
    from torch import nn

    return [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def residual_block(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    """conv-bn-relu (``c_in`` -> ``c_out``) then a zero-initialised conv: its output, added to
    the features, is 0 until it has learned something."""
    from torch import nn

    return nn.Sequential(*conv_bn_relu(c_in, c_out, kernel), _zero_conv(c_out, c_out, kernel))


class PointCue(Conditioning):
    """The report's instance cue: a Gaussian (peak 1, ``pose.data.cue_sigma``) at one point.
    Training cues a labeled joint of the target, jittered by ``pose.data.cue_jitter``; a crop
    without one, and an inference instance without a point, is cued at the crop centre. A
    two-conv input-refinement block merges the cue, area-resized to the stem's 1/4
    resolution, with the 64-channel stem features and adds the result (residual), before
    HRNet's ``layer1``."""

    name = "point"
    channels = 1
    weight_prefix = "cue_block."

    def train_point(self, rng: np.random.Generator, joints: np.ndarray, weight: np.ndarray,
                    input_size: tuple[int, int], jitter: float) -> np.ndarray:
        candidates = np.flatnonzero(weight[:, 0] > 0)
        if len(candidates) == 0:
            return np.array(input_size, dtype=np.float64) * 0.5
        j = candidates[rng.integers(len(candidates))]
        return joints[j] + rng.normal(0.0, jitter, 2)

    def eval_point(self, point: tuple[float, float] | None, m: np.ndarray,
                   input_size: tuple[int, int]) -> np.ndarray:
        if point is None:
            return np.array(input_size, dtype=np.float64) * 0.5
        return np.asarray(point, dtype=np.float64) @ m[:, :2].T + m[:, 2]

    def render(self, point: np.ndarray | None, input_size: tuple[int, int],
               sigma: float) -> np.ndarray:
        w, h = input_size
        if point is None:
            point = np.array(input_size, dtype=np.float64) * 0.5
        xs = np.arange(w, dtype=np.float32)
        ys = np.arange(h, dtype=np.float32)
        gx = np.exp(-((xs - point[0]) ** 2) / (2 * sigma**2))
        gy = np.exp(-((ys - point[1]) ** 2) / (2 * sigma**2))
        return (gy[:, None] * gx[None, :])[None].astype(np.float32)

    def network_block(self, stem_channels: int) -> nn.Module:
        return residual_block(stem_channels + self.channels, stem_channels, 3)

    def merge(self, block: nn.Module, features: Tensor, cue: Tensor) -> Tensor:
        import torch
        import torch.nn.functional as F

        # Area-resize the cue to the stem's resolution (exactly 4x4 averages when H, W are
        # multiples of 4), in the features' dtype so that autocast/bf16 concatenates.
        small = F.adaptive_avg_pool2d(cue, features.shape[-2:]).to(features.dtype)
        return features + block(torch.cat([features, small], dim=1))


class DiskCue(PointCue):
    """The point cue drawn as a hard disk (1 inside radius ``pose.data.cue_sigma``, else 0)
    instead of a Gaussian: the same point, the same block; a sharper mark of the person."""

    name = "disk"

    def render(self, point: np.ndarray | None, input_size: tuple[int, int],
               sigma: float) -> np.ndarray:
        w, h = input_size
        if point is None:
            point = np.array(input_size, dtype=np.float64) * 0.5
        ys, xs = np.mgrid[0:h, 0:w]
        inside = (xs - point[0]) ** 2 + (ys - point[1]) ** 2 <= sigma**2
        return inside[None].astype(np.float32)


#: Every cue type by its ``models.<name>.cue`` value.
CUES: dict[str, Conditioning] = {c.name: c for c in (Conditioning(), PointCue(), DiskCue())}
#: The values ``models.<name>.cue`` may take.
CUE_KINDS: tuple[str, ...] = tuple(CUES)


def conditioning(name: str) -> Conditioning:
    """The cue type ``name`` (a ValueError naming the known ones otherwise)."""
    if name not in CUES:
        raise ValueError(f"unknown cue type {name!r} (known: {', '.join(CUE_KINDS)})")
    return CUES[name]
