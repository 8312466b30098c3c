"""What a recurrent model's later hops see of the earlier ones in training (issue 25, lead 2).

The report feeds each hop's heatmaps back as they are, gradient and all, and every hop is
trained on the same clean crops to the same target, so by the time the feedback blocks learn,
hop 1 has taken the whole loss and there is nothing left to fix. Refinement models learn to
fix errors only when their inputs hold some (PoseFix and BUCTD train on corrupted poses,
Iterative Error Feedback and AlphaFold's recycling feed back detached predictions). Two
params of ``pose.data`` give the hops that job; both off is the report:

- ``feedback_detach``: the fed-back heatmaps carry no gradient;
- ``feedback_corrupt``: each joint's fed-back heatmap is, with this probability, moved by a
  few heatmap pixels (a jitter) or replaced by its mirror twin's (an inversion). Which joints
  and how far is drawn by the dataset per sample (``Sample["feedback"]``, from its seeded
  stream), so training stays deterministic and independent of the loader's workers.

Inference always feeds back the clean heatmaps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hintpose.data.transforms import flip_pairs_from_names
from hintpose.topdown.params import PoseDataParams

#: Kinds of a joint's corruption in a ``feedback`` plan (N, J, 3: kind, dx, dy).
KEEP, SHIFT, TWIN = 0, 1, 2

#: Maps one hop's heatmaps to what the next hop is given (HintPose.forward's ``feedback``).
FeedbackFn = Callable[[Tensor], Tensor]


def mirror_twins(keypoint_names: Sequence[str]) -> tuple[int, ...]:
    """Each joint's left/right twin by name (itself when it has none)."""
    twins = list(range(len(keypoint_names)))
    for a, b in flip_pairs_from_names(list(keypoint_names)):
        twins[a], twins[b] = b, a
    return tuple(twins)


def corrupt_heatmaps(heat: Tensor, plan: Tensor, twins: Sequence[int]) -> Tensor:
    """``heat`` (N, J, h, w) with the corruption of ``plan`` (N, J, 3): joints of kind TWIN
    take their twin's heatmap, joints of kind SHIFT are moved by (dx, dy) heatmap pixels
    (bilinear, zeros from outside); KEEP joints stay exactly as they are."""
    n, j, h, w = heat.shape
    if plan.shape != (n, j, 3):
        raise ValueError(f"corrupt_heatmaps: plan must be {(n, j, 3)}, got {tuple(plan.shape)}")
    kind = plan[..., 0].round().long().to(heat.device)
    plan = plan.to(device=heat.device, dtype=torch.float32)
    own = torch.arange(j, device=heat.device).expand(n, j)
    twin = torch.as_tensor(list(twins), device=heat.device).expand(n, j)
    source = torch.where(kind == TWIN, twin, own)
    out = heat.float().gather(1, source[:, :, None, None].expand(n, j, h, w))
    shifted = kind == SHIFT
    if bool(shifted.any()):
        dx, dy = plan[..., 1][shifted], plan[..., 2][shifted]
        m = int(dx.numel())
        theta = torch.zeros(m, 2, 3, device=heat.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, 0, 2], theta[:, 1, 2] = -2 * dx / w, -2 * dy / h
        grid = F.affine_grid(theta, [m, 1, h, w], align_corners=False)
        moved = F.grid_sample(out[shifted].unsqueeze(1), grid, align_corners=False,
                              padding_mode="zeros").squeeze(1)
        out = out.clone()
        out[shifted] = moved
    return out.to(heat.dtype)


@dataclass(frozen=True)
class FeedbackTraining:
    """How a recurrent model's hops are fed in training (see the module docstring)."""

    detach: bool
    twins: tuple[int, ...]

    @classmethod
    def of(cls, params: PoseDataParams,
           keypoint_names: Sequence[str]) -> FeedbackTraining | None:
        """The settings of ``pose.data``; None for the report's (clean, attached)."""
        if not params.feedback_detach and not params.feedback_corrupt:
            return None
        return cls(params.feedback_detach, mirror_twins(keypoint_names))

    def transform(self, plan: Tensor | None) -> FeedbackFn:
        """The ``feedback`` of one batch whose samples drew ``plan`` (None: no corruption)."""
        def fed(heat: Tensor) -> Tensor:
            if self.detach:
                heat = heat.detach()
            return heat if plan is None else corrupt_heatmaps(heat, plan, self.twins)
        return fed
