"""HintPose: HRNet with an instance-cue input and recurrent refinement (ICCV 2019 challenge report).

- *Instance cue*: a single-channel Gaussian map at the cue point tells the network which of
  the people in a crowded box to estimate. A two-conv input-refinement block merges it, at the
  stem's 1/4 resolution, with the 64-channel stem features and adds the result to them
  (residual), before ``layer1``.
- *Recurrent refinement* (Feedback-Networks style): each hop's heatmaps are turned into a hint
  by a 1x1 conv block; another 1x1 conv block updates the ``layer1`` features with it
  (residual), and the HRNet head (stages 2-4 and the final layer) runs again. ``layer1`` runs
  once; ``hops`` passes in total, each supervised.

Both additions end in a zero-initialised conv, so an untrained HintPose with HRNet weights in
its ``backbone`` gives exactly the HRNet output (at every hop).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hintpose.models.hrnet import (
    LAYER1_CHANNELS,
    OFFICIAL_BLOCKS,
    OFFICIAL_MODULES,
    STEM_CHANNELS,
    HRNet,
    load_pretrained,
)

__all__ = ["HintPose", "joints_mse_loss"]

#: Channels of the hint extracted from the previous hop's heatmaps.
HINT_CHANNELS = 64


def _conv_bn_relu(c_in: int, c_out: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _zero_conv(c_in: int, c_out: int, kernel: int) -> nn.Conv2d:
    """A conv whose weight and bias start at zero: the block it ends adds nothing at first."""
    conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class HintPose(nn.Module):
    """HRNet-W``width`` with optional instance cue and recurrent refinement.

    ``forward(image (N, 3, H, W), cue (N, 1, H, W) | None)`` returns the list of every hop's
    heatmaps (N, J, H/4, W/4): ``hops`` of them when ``recurrent``, else one. Predictions use
    the last one.
    """

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> HintPose:
        """The network a ``model.json`` describes (hintpose.topdown.training.model_config)."""
        return cls(config["width"], config["instance_cue"], config["recurrent"],
                   hops=config["hops"], num_joints=config["num_joints"],
                   modules=tuple(config.get("modules", OFFICIAL_MODULES)),
                   blocks=config.get("blocks", OFFICIAL_BLOCKS),
                   init=config.get("init", "official"))

    def __init__(self, width: int, instance_cue: bool, recurrent: bool, hops: int = 3,
                 num_joints: int = 17, modules: tuple[int, ...] = OFFICIAL_MODULES,
                 blocks: int = OFFICIAL_BLOCKS, init: str = "official") -> None:
        super().__init__()
        for name, value in (("width", width), ("hops", hops), ("num_joints", num_joints)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"HintPose: {name} must be an integer >= 1, got {value!r}")
        for name, flag in (("instance_cue", instance_cue), ("recurrent", recurrent)):
            if not isinstance(flag, bool):
                raise ValueError(f"HintPose: {name} must be a bool, got {flag!r}")
        self.width = width
        self.instance_cue = instance_cue
        self.recurrent = recurrent
        self.hops = hops
        self.num_joints = num_joints
        self.backbone = HRNet(width, num_joints, modules, blocks, init)
        self.cue_block: nn.Sequential | None = None
        self.hint_block: nn.Sequential | None = None
        self.update_block: nn.Sequential | None = None
        if instance_cue:
            self.cue_block = nn.Sequential(
                *_conv_bn_relu(STEM_CHANNELS + 1, STEM_CHANNELS, 3),
                _zero_conv(STEM_CHANNELS, STEM_CHANNELS, 3),
            )
        if recurrent:
            self.hint_block = nn.Sequential(*_conv_bn_relu(num_joints, HINT_CHANNELS, 1))
            self.update_block = nn.Sequential(
                *_conv_bn_relu(LAYER1_CHANNELS + HINT_CHANNELS, LAYER1_CHANNELS, 1),
                _zero_conv(LAYER1_CHANNELS, LAYER1_CHANNELS, 1),
            )

    def added_parameters(self) -> list[nn.Parameter]:
        """The parameters of the blocks HintPose adds to HRNet (cue, hint, update)."""
        blocks = (self.cue_block, self.hint_block, self.update_block)
        return [p for block in blocks if block is not None for p in block.parameters()]

    @property
    def num_outputs(self) -> int:
        """Length of the list :meth:`forward` returns."""
        return self.hops if self.recurrent else 1

    def load_backbone(self, path: str | Path) -> None:
        """Strictly load an (official) HRNet checkpoint into ``self.backbone``."""
        load_pretrained(self.backbone, path)

    def _check_inputs(self, image: Tensor, cue: Tensor | None) -> None:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"HintPose: image must be (N, 3, H, W), got {tuple(image.shape)}")
        if self.instance_cue and cue is None:
            raise ValueError("HintPose: this model has an instance-cue input; pass cue "
                             "(N, 1, H, W)")
        if not self.instance_cue and cue is not None:
            raise ValueError("HintPose: this model has no instance-cue input; pass cue=None")
        if cue is not None:
            n, _, h, w = image.shape
            if tuple(cue.shape) != (n, 1, h, w):
                raise ValueError(f"HintPose: cue must be (N, 1, H, W) = {(n, 1, h, w)}, "
                                 f"got {tuple(cue.shape)}")

    def forward(self, image: Tensor, cue: Tensor | None = None) -> list[Tensor]:
        self._check_inputs(image, cue)
        net = self.backbone
        x = net.stem(image)
        if self.cue_block is not None and cue is not None:
            # Area-resize the cue to the stem's resolution (exactly 4x4 averages when H, W
            # are multiples of 4), in the features' dtype so autocast/bf16 concatenates.
            small = F.adaptive_avg_pool2d(cue, x.shape[-2:]).to(x.dtype)
            x = x + self.cue_block(torch.cat([x, small], dim=1))
        features = net.layer1(x)
        outputs = [net.head(features)]
        if self.hint_block is not None and self.update_block is not None:
            for _ in range(self.hops - 1):
                hint = self.hint_block(outputs[-1])
                update = self.update_block(torch.cat([features, hint.to(features.dtype)], 1))
                outputs.append(net.head(features + update))
        return outputs


def joints_mse_loss(outputs: list[Tensor], target: Tensor, target_weight: Tensor) -> Tensor:
    """HRNet's JointsMSELoss with target weights, summed over ``outputs`` (hops), in fp32.

    Per joint 0.5 * mean((pred * w - gt * w)^2) over (N, h, w), averaged over joints; every
    joint has N*h*w elements, so that is 0.5 * the mean over all elements. ``target`` is
    (N, J, h, w), ``target_weight`` (N, J, 1) (or (N, J)).
    """
    if not outputs:
        raise ValueError("joints_mse_loss: outputs is empty")
    if target.dim() != 4 or target_weight.numel() != target.shape[0] * target.shape[1]:
        raise ValueError(f"joints_mse_loss: target must be (N, J, h, w) and target_weight "
                         f"(N, J, 1), got {tuple(target.shape)} and {tuple(target_weight.shape)}")
    n, j = target.shape[:2]
    gt = target.float()
    weight = target_weight.float().reshape(n, j, 1, 1)
    total: Tensor | None = None
    for out in outputs:
        if out.shape != target.shape:
            raise ValueError(f"joints_mse_loss: output {tuple(out.shape)} and target "
                             f"{tuple(target.shape)} differ in shape")
        loss = 0.5 * F.mse_loss(out.float() * weight, gt * weight)
        total = loss if total is None else total + loss
    assert total is not None
    return total
