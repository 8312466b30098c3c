"""The ResNet trunk shared by MultiPoseNet and PoseFix: torchvision's blocks and stage builder
(``ResNet._make_layer``) with the base width and the stem's input channels as parameters, so
that width 64 with 3 input channels is torchvision's ResNet and loads its ImageNet weights."""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

__all__ = ["DEPTHS", "ResNetTrunk"]

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

class ResNetTrunk(ResNet):
    """torchvision's ResNet without pooling and classifier: ``width`` base channels (64: the
    original; stages have 1, 2, 4 and 8 x width planes), a stem taking ``in_channels``
    channels, returning the outputs C2-C5 of ``layer1``-``layer4``."""

    def __init__(self, depth: int, width: int = 64, in_channels: int = 3) -> None:
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
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
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
