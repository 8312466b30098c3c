"""PoseFix (Moon, Chang, Lee, CVPR 2019): a pose refiner that sees the image and an input pose.

Input: the person crop (3 channels, ImageNet-normalised) concatenated with the input pose
rendered as J Gaussian maps (peak 1, the scale of the normalised image; an all-zero map for a
joint without input). Trunk: torchvision's ResNet (BasicBlock or Bottleneck by depth) at a
chosen base width, its stem convolution widened to 3 + J input channels. Head: stride-2 4x4
transposed convolutions (with BatchNorm and ReLU, as SimpleBaselines) and a 1x1 convolution to
J maps (optionally plus an input-pose skip, see ``PoseFix``). The output maps are logits: a
softmax over each map gives a distribution whose expectation (soft-argmax, "integral") is the
joint's position.

``PoseFixHRNet`` (beyond the report, ``posefix.backbone: hrnet``) is the same refiner on the
project's HRNet, initialised from the pretrain stage's weights: the input pose maps enter
after HRNet's stem through a zero-initialised residual block (as the instance cue does), so the
untrained refiner is the pretrained pose network, and its output is HRNet's heatmaps (MSE
targets, decoded as the pose models' are). PoseFix trained its ResNet from ImageNet weights;
the pretrained HRNet is the only pose-trained trunk here.

Letters in shapes: N instances, J joints, [W, H] input size, [w, h] output map size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hintpose.models.hrnet import STEM_CHANNELS, HRNet, load_pretrained
from hintpose.models.resnet import ResNetTrunk
from hintpose.topdown.conditioning import residual_block

TRUNK_STRIDE = 32
#: Floor of the input-pose skip's maps before the log (a joint without input: uniform).
SKIP_EPS = 1e-6


class PoseFix(nn.Module):
    """PoseFix: (image (N, 3, H, W), pose maps (N, J, H, W)) -> logits (N, J, h, w), with
    h = H / stride, stride = 32 / 2^head_layers (4 with PoseFix's three deconvolutions)."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PoseFix:
        """The network a ``model.json`` describes (hintpose.posefix.training.model_config)."""
        return cls(config["num_joints"], config["depth"], config["width"],
                   config["head_channels"], config["head_layers"], config["input_skip"])

    def __init__(self, num_joints: int = 17, depth: int = 50, width: int = 64,
                 head_channels: int = 256, head_layers: int = 3,
                 input_skip: float = 0.0) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.trunk = ResNetTrunk(depth, width, 3 + num_joints)
        layers: list[nn.Module] = []
        channels = self.trunk.out_channels[-1]
        for _ in range(head_layers):
            layers += [nn.ConvTranspose2d(channels, head_channels, 4, stride=2, padding=1,
                                          bias=False),
                       nn.BatchNorm2d(head_channels), nn.ReLU(inplace=True)]
            channels = head_channels
        self.head = nn.Sequential(*layers)
        self.final = nn.Conv2d(channels, num_joints, kernel_size=1)
        for m in self.head.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)
        self.stride = TRUNK_STRIDE // 2**head_layers
        #: Input-pose skip (not in the paper; 0 leaves it out): the logits get a learnable
        #: scale (starting at ``input_skip``) times the log of the input pose maps averaged
        #: over a (2 stride - 1)^2 window around each output pixel (centred on input pixel
        #: p * stride), so an untrained network returns its input pose, unbiased, and training
        #: learns corrections instead of first learning to copy the pose through the trunk.
        self.skip_scale = (nn.Parameter(torch.tensor(float(input_skip))) if input_skip > 0
                           else None)

    def forward(self, image: torch.Tensor, pose_maps: torch.Tensor) -> torch.Tensor:
        x = self.trunk(torch.cat([image, pose_maps], dim=1))[-1]
        logits = self.final(self.head(x))
        if self.skip_scale is not None:
            s = self.stride
            prior = F.avg_pool2d(pose_maps.float(), 2 * s - 1, stride=s, padding=s - 1)
            prior = prior[..., :logits.shape[2], :logits.shape[3]]
            logits = logits + self.skip_scale * torch.log(prior + SKIP_EPS)
        return logits


class PoseFixHRNet(nn.Module):
    """PoseFix on HRNet: (image (N, 3, H, W), pose maps (N, J, H, W)) -> heatmaps
    (N, J, H/4, W/4); see the module docstring."""

    stride = 4

    def __init__(self, num_joints: int, width: int, modules: tuple[int, ...], blocks: int,
                 init: str = "he") -> None:
        super().__init__()
        self.num_joints, self.width = num_joints, width
        self.backbone = HRNet(width, num_joints, tuple(modules), blocks, init)
        self.pose_block = residual_block(STEM_CHANNELS + num_joints, STEM_CHANNELS, 3)

    def load_backbone(self, path: str | Path) -> None:
        """Strictly load an HRNet checkpoint (the pretrain stage's) into ``self.backbone``."""
        load_pretrained(self.backbone, path)

    def forward(self, image: torch.Tensor, pose_maps: torch.Tensor) -> torch.Tensor:
        net = self.backbone
        x = net.stem(image)
        small = F.adaptive_avg_pool2d(pose_maps, x.shape[-2:]).to(x.dtype)
        x = x + self.pose_block(torch.cat([x, small], dim=1))
        return net.head(net.layer1(x))


def build_posefix(config: dict[str, Any]) -> PoseFix | PoseFixHRNet:
    """The refiner a ``model.json`` describes (hintpose.posefix.training.model_config): the
    ResNet PoseFix, or with ``backbone: hrnet`` PoseFixHRNet."""
    if config.get("backbone", "resnet") == "hrnet":
        hr = config["hrnet"]
        float(config["sigma"])  # refinement decodes with it: a model.json without it is invalid
        return PoseFixHRNet(config["num_joints"], hr["width"], tuple(hr["modules"]),
                            hr["blocks"])
    return PoseFix.from_config(config)


def gaussian_targets(target: torch.Tensor, valid: torch.Tensor, h: int, w: int, sigma: float
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmap targets (N, J, h, w) of joints ``target`` (N, J, 2) in map pixels: unbiased
    Gaussians (sigma in map pixels) on the joint, peak 1, as the pose models' ``unbiased``
    targets; a joint that is invalid or outside the map gets weight 0 (returned (N, J))."""
    x, y = target[..., 0], target[..., 1]
    ok = valid.bool() & (x >= 0) & (y >= 0) & (x <= w - 1) & (y <= h - 1)
    xs = torch.arange(w, dtype=torch.float32, device=target.device)
    ys = torch.arange(h, dtype=torch.float32, device=target.device)
    gx = torch.exp(-((xs - x[..., None].float()) ** 2) / (2 * sigma**2))
    gy = torch.exp(-((ys - y[..., None].float()) ** 2) / (2 * sigma**2))
    return gy[..., :, None] * gx[..., None, :], ok.float()


def heatmap_loss(heatmaps: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                 sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PoseFixHRNet's loss: HRNet's joint MSE (0.5 x mean squared error per valid joint)
    against gaussian_targets; returns it with the distance (map pixels) of each valid joint's
    heatmap argmax to the GT, averaged (a figure comparable with PoseFix's L1)."""
    n, j, h, w = heatmaps.shape
    maps, ok = gaussian_targets(target.float(), valid, h, w, sigma)
    err = ((heatmaps.float() - maps) ** 2).mean((2, 3)) * 0.5
    count = ok.sum().clamp(min=1)
    flat = heatmaps.detach().float().reshape(n, j, h * w).argmax(2)
    at = torch.stack([flat % w, flat // w], dim=2).float()
    dist = (at - target.float()).norm(dim=2)
    return (err * ok).sum() / count, ((dist * ok).sum() / count).detach()


def soft_argmax(logits: torch.Tensor) -> torch.Tensor:
    """Logits (N, J, h, w) -> the expected (x, y) under each map's softmax, (N, J, 2), in
    output-map pixels."""
    n, j, h, w = logits.shape
    prob = F.softmax(logits.float().reshape(n, j, h * w), dim=2).reshape(n, j, h, w)
    xs = torch.arange(w, dtype=prob.dtype, device=prob.device)
    ys = torch.arange(h, dtype=prob.dtype, device=prob.device)
    return torch.stack([(prob.sum(2) * xs).sum(2), (prob.sum(3) * ys).sum(2)], dim=2)


def bilinear_target(target: torch.Tensor, valid: torch.Tensor, h: int, w: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """PoseFix's classification target: for joints at ``target`` (N, J, 2) in map pixels, a
    one-hot map spread bilinearly over the four pixels around the point, (N, J, h*w); a joint
    that is invalid or not strictly inside the map gets no target (returned validity)."""
    x, y = target[..., 0], target[..., 1]
    valid = valid.bool() & (x >= 0) & (y >= 0) & (x <= w - 1) & (y <= h - 1)
    x0 = x.floor().clamp(0, w - 1)
    y0 = y.floor().clamp(0, h - 1)
    fx, fy = (x - x0).clamp(0, 1), (y - y0).clamp(0, 1)
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    out = torch.zeros(*target.shape[:2], h * w, dtype=torch.float32, device=target.device)
    for xx, yy, wt in ((x0, y0, (1 - fx) * (1 - fy)), (x1, y0, fx * (1 - fy)),
                       (x0, y1, (1 - fx) * fy), (x1, y1, fx * fy)):
        out.scatter_add_(2, (yy * w + xx).long()[..., None], (wt * valid).float()[..., None])
    return out, valid


def posefix_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                 coord_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PoseFix's loss on logits (N, J, h, w) for GT joints ``target`` (N, J, 2) in map
    pixels with ``valid`` (N, J): per joint, softmax cross-entropy against the bilinear
    one-hot target plus ``coord_weight`` x the L1 distance of the soft-argmax point to the GT,
    each averaged over valid joints. Returns (total, cross-entropy, coordinate L1)."""
    n, j, h, w = logits.shape
    logp = F.log_softmax(logits.float().reshape(n, j, h * w), dim=2)
    onehot, ok = bilinear_target(target.float(), valid, h, w)
    count = ok.sum().clamp(min=1)
    ce = -(onehot * logp).sum(2)
    coords = soft_argmax(logits)
    l1 = (coords - target.float()).abs().sum(2)
    ce = (ce * ok).sum() / count
    l1 = (l1 * ok).sum() / count
    return ce + coord_weight * l1, ce.detach(), l1.detach()
