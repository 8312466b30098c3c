"""PoseFix (Moon, Chang, Lee, CVPR 2019): a pose refiner that sees the image and an input pose.

Input: the person crop (3 channels, ImageNet-normalised) concatenated with the input pose
rendered as J Gaussian maps (peak 1, the scale of the normalised image; an all-zero map for a
joint without input). Trunk: torchvision's ResNet (BasicBlock or Bottleneck by depth) at a
chosen base width, its stem convolution widened to 3 + J input channels. Head: stride-2 4x4
transposed convolutions (with BatchNorm and ReLU, as SimpleBaselines) and a 1x1 convolution to
J maps (optionally plus an input-pose skip, see ``PoseFix``). The output maps are logits: a
softmax over each map gives a distribution whose expectation (soft-argmax, "integral") is the
joint's position.

Letters in shapes: N instances, J joints, [W, H] input size, [w, h] output map size.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hintpose.models.resnet import ResNetTrunk

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
