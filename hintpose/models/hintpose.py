"""HintPose: HRNet with an instance-cue input and recurrent refinement (ICCV 2019 challenge report).

- *Instance cue*: an input that tells the network which of the people in a crowded box to
  estimate. Its type (the report's: a Gaussian map at one point) is a
  hintpose.topdown.conditioning class, which renders it and owns the block that merges it
  into the stem features before ``layer1``.
- *Recurrent refinement* (Feedback-Networks style): each hop's heatmaps are turned into a hint
  by a 1x1 conv block; another 1x1 conv block updates the ``layer1`` features with it
  (residual), and the HRNet head (stages 2-4 and the final layer) runs again. ``layer1`` runs
  once; ``hops`` passes in total, each supervised.

Both additions end in a zero-initialised conv, so an untrained HintPose with HRNet weights in
its ``backbone`` gives exactly the HRNet output (at every hop).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
from hintpose.topdown.conditioning import (
    CUE_KINDS,
    Conditioning,
    conditioning,
    conv_bn_relu,
    residual_block,
)

__all__ = ["HintPose", "joints_mse_loss"]

#: Channels of the hint extracted from the previous hop's heatmaps.
HINT_CHANNELS = 64
#: Parameter-name prefixes of the recurrent-refinement blocks.
FEEDBACK_PREFIXES = ("hint_block.", "update_block.")


class HintPose(nn.Module):
    """HRNet-W``width`` with an optional cue input (``cue``: a type of
    hintpose.topdown.conditioning, ``none`` or the report's ``point``) and recurrent
    refinement.

    ``forward(image (N, 3, H, W), cue (N, C, H, W) | None)`` returns the list of every hop's
    heatmaps (N, J, H/4, W/4): ``hops`` of them when ``recurrent``, else one. Predictions use
    the last one. Built from a model description by hintpose.topdown.spec.ModelSpec.build.
    """

    def __init__(self, width: int, cue: str = "none", recurrent: bool = False, hops: int = 3,
                 num_joints: int = 17, modules: tuple[int, ...] = OFFICIAL_MODULES,
                 blocks: int = OFFICIAL_BLOCKS, init: str = "official") -> None:
        super().__init__()
        for name, value in (("width", width), ("hops", hops), ("num_joints", num_joints)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"HintPose: {name} must be an integer >= 1, got {value!r}")
        if not isinstance(recurrent, bool):
            raise ValueError(f"HintPose: recurrent must be a bool, got {recurrent!r}")
        if not isinstance(cue, str) or cue not in CUE_KINDS:
            raise ValueError(f"HintPose: cue must be one of {', '.join(CUE_KINDS)}, "
                             f"got {cue!r}")
        self.conditioning: Conditioning = conditioning(cue)
        self.width = width
        self.recurrent = recurrent
        self.hops = hops
        self.num_joints = num_joints
        self.backbone = HRNet(width, num_joints, modules, blocks, init)
        self.cue_block = self.conditioning.network_block(STEM_CHANNELS)
        self.hint_block: nn.Sequential | None = None
        self.update_block: nn.Sequential | None = None
        if recurrent:
            self.hint_block = nn.Sequential(*conv_bn_relu(num_joints, HINT_CHANNELS, 1))
            self.update_block = residual_block(LAYER1_CHANNELS + HINT_CHANNELS,
                                               LAYER1_CHANNELS, 1)

    @property
    def takes_cue(self) -> bool:
        """Whether :meth:`forward` needs a cue."""
        return self.conditioning.takes_input

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
        c = self.conditioning.channels
        if self.takes_cue and cue is None:
            raise ValueError(f"HintPose: this model has a cue input; pass cue (N, {c}, H, W)")
        if not self.takes_cue and cue is not None:
            raise ValueError("HintPose: this model has no cue input; pass cue=None")
        if cue is not None:
            n, _, h, w = image.shape
            if tuple(cue.shape) != (n, c, h, w):
                raise ValueError(f"HintPose: cue must be (N, {c}, H, W) = {(n, c, h, w)}, "
                                 f"got {tuple(cue.shape)}")

    def forward(self, image: Tensor, cue: Tensor | None = None,
                feedback: Callable[[Tensor], Tensor] | None = None) -> list[Tensor]:
        """Every hop's heatmaps; ``feedback`` (training only, hintpose.topdown.feedback) maps a
        hop's heatmaps to what the next hop is given (None: the heatmaps themselves)."""
        self._check_inputs(image, cue)
        net = self.backbone
        x = net.stem(image)
        if self.cue_block is not None and cue is not None:
            x = self.conditioning.merge(self.cue_block, x, cue)
        features = net.layer1(x)
        outputs = [net.head(features)]
        if self.hint_block is not None and self.update_block is not None:
            for _ in range(self.hops - 1):
                fed = outputs[-1] if feedback is None else feedback(outputs[-1])
                hint = self.hint_block(fed)
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
