"""MultiPoseNet's keypoint subnet (Kocabas et al., ECCV 2018): bottom-up joint heatmaps.

A torchvision ResNet trunk (``BasicBlock``/``Bottleneck`` stacked by torchvision's own
``ResNet._make_layer``, with the base width as a parameter: 64 is torchvision's ResNet and
loads its ImageNet state dict) feeds a ``torchvision.ops.FeaturePyramidNetwork`` (P2-P5 at
1/4-1/32). Each level has its own head of two 3x3 convs (the paper's K2-K5 features) with a
1x1 conv predicting the maps at that level's resolution (intermediate supervision); the four
head outputs are upsampled to 1/4, concatenated and turned into the final maps by a 3x3 and a
1x1 conv. Maps: J joint heatmaps (per joint the max over persons of their Gaussians) plus one
person-segmentation channel, all trained with an L2 loss.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork

from hintpose.models.resnet import DEPTHS, ResNetTrunk

__all__ = ["DEPTHS", "MultiPoseNet", "ResNetTrunk", "multiposenet_loss"]

#: The feature pyramid's levels (strides 4, 8, 16, 32).
LEVELS = ("p2", "p3", "p4", "p5")


def _conv3x3_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]


class MultiPoseNet(nn.Module):
    """The keypoint subnet: ``forward(image (N, 3, H, W))`` returns ``(maps, levels)``:
    ``maps`` (N, J + 1, H/4, W/4), J joint heatmaps and the segmentation channel last, and
    ``levels``, the same maps predicted from each pyramid level alone at strides 4, 8, 16
    and 32 (intermediate supervision). H and W must be multiples of 32."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MultiPoseNet:
        """The network a ``model.json`` describes (hintpose.bottomup.training.model_config)."""
        return cls(config["depth"], config["width"], config["num_joints"],
                   config["fpn_channels"], config["head_channels"])

    def __init__(self, depth: int = 18, width: int = 64, num_joints: int = 17,
                 fpn_channels: int = 256, head_channels: int = 128) -> None:
        super().__init__()
        for name, value in (("num_joints", num_joints), ("fpn_channels", fpn_channels),
                            ("head_channels", head_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MultiPoseNet: {name} must be an integer >= 1, got {value!r}")
        self.depth, self.width, self.num_joints = depth, width, num_joints
        self.num_outputs = num_joints + 1
        self.backbone = ResNetTrunk(depth, width)
        self.fpn = FeaturePyramidNetwork(self.backbone.out_channels, fpn_channels)
        self.heads = nn.ModuleList(
            nn.Sequential(*_conv3x3_relu(fpn_channels, head_channels),
                          *_conv3x3_relu(head_channels, head_channels))
            for _ in LEVELS)
        self.level_outputs = nn.ModuleList(
            nn.Conv2d(head_channels, self.num_outputs, 1) for _ in LEVELS)
        self.fuse = nn.Sequential(*_conv3x3_relu(head_channels * len(LEVELS), head_channels),
                                  nn.Conv2d(head_channels, self.num_outputs, 1))

    def channels_last_trainable(self) -> bool:
        """False when training in channels_last would hit a PyTorch CPU bug (seen with torch
        2.14): the backward pass of a 1x1 stride-2 conv with 2-7 input channels in
        channels_last corrupts the heap. Only trunks narrower than 8 channels have one."""
        return not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)
                       and m.stride == (2, 2) and 1 < m.in_channels < 8 for m in self.modules())

    def load_backbone(self, path: str | Path) -> None:
        """Load a torchvision ResNet state dict (its ``fc`` is ignored) into the trunk,
        strictly; the file is read with ``weights_only=True``."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        self.backbone.load_state_dict(state, strict=True)

    def forward(self, image: Tensor) -> tuple[Tensor, list[Tensor]]:
        if image.dim() != 4 or image.shape[1] != 3 or image.shape[2] % 32 or image.shape[3] % 32:
            raise ValueError(f"MultiPoseNet: image must be (N, 3, H, W) with H and W multiples "
                             f"of 32, got {tuple(image.shape)}")
        pyramid = self.fpn(OrderedDict(zip(LEVELS, self.backbone(image), strict=True)))
        feats = [head(p) for head, p in zip(self.heads, pyramid.values(), strict=True)]
        levels = [out(f) for out, f in zip(self.level_outputs, feats, strict=True)]
        size = feats[0].shape[-2:]
        up = [feats[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False)
                           for f in feats[1:]]
        return self.fuse(torch.cat(up, 1)), levels


def multiposenet_loss(maps: Tensor, levels: list[Tensor], target: Tensor,
                      weight: Tensor) -> tuple[Tensor, Tensor]:
    """L2 loss of the final maps plus that of every pyramid level against the target at its
    resolution (the map max-pooled, so that small Gaussians keep their peak of 1, and the
    weight average-pooled), in fp32.

    ``target`` and ``weight`` are (N, J + 1, h, w) at the final resolution; ``weight`` is 0
    where a channel must not be judged (joints of persons without labels). Each term is
    ``0.5 * mean((pred - target)^2 * weight)``. Returns (total, final-maps term).
    """
    if target.shape != maps.shape or weight.shape != maps.shape:
        raise ValueError(f"multiposenet_loss: target and weight must be {tuple(maps.shape)}, "
                         f"got {tuple(target.shape)} and {tuple(weight.shape)}")
    target, weight = target.float(), weight.float()

    def l2(pred: Tensor, gt: Tensor, w: Tensor) -> Tensor:
        return 0.5 * ((pred.float() - gt) ** 2 * w).mean()

    final = l2(maps, target, weight)
    total = final
    for pred in levels:
        size = pred.shape[-2:]
        if size == target.shape[-2:]:
            total = total + l2(pred, target, weight)
            continue
        # A Gaussian's peak survives pooling better as a max; the weight as an average.
        gt = F.adaptive_max_pool2d(target, size)
        w = F.adaptive_avg_pool2d(weight, size)
        total = total + l2(pred, gt, w)
    return total, final
