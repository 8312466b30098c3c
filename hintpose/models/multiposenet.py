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

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.ops import FeaturePyramidNetwork

__all__ = ["DEPTHS", "MultiPoseNet", "ResNetTrunk", "multiposenet_loss"]

#: ResNet depth -> (block, blocks per stage). 18-152 are torchvision's; 10 is the smallest
#: stack of the same blocks, for the CPU-sized default.
DEPTHS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    10: (BasicBlock, [1, 1, 1, 1]),
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}
#: The feature pyramid's levels (strides 4, 8, 16, 32).
LEVELS = ("p2", "p3", "p4", "p5")


class ResNetTrunk(ResNet):
    """torchvision's ResNet without its classifier, ``width`` base channels (64: the
    original), returning the outputs C2-C5 of ``layer1``-``layer4``."""

    def __init__(self, depth: int, width: int = 64) -> None:
        if depth not in DEPTHS:
            raise ValueError(f"ResNetTrunk: depth must be one of {sorted(DEPTHS)}, got {depth!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"ResNetTrunk: width must be an integer >= 1, got {width!r}")
        block, layers = DEPTHS[depth]
        # ResNet.__init__ hard-codes 64 base channels and a classifier; set up the attributes
        # its _make_layer reads and build the stages with the scaled widths instead.
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.out_channels = [width * m * block.expansion for m in (1, 2, 4, 8)]
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> list[Tensor]:  # type: ignore[override]
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return [c2, c3, c4, self.layer4(c4)]


def _conv3x3_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]


class MultiPoseNet(nn.Module):
    """The keypoint subnet: ``forward(image (N, 3, H, W))`` returns ``(maps, levels)``:
    ``maps`` (N, J + 1, H/4, W/4), J joint heatmaps and the segmentation channel last, and
    ``levels``, the same maps predicted from each pyramid level alone at strides 4, 8, 16
    and 32 (intermediate supervision). H and W must be multiples of 32."""

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
