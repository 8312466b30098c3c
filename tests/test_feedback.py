"""hintpose.topdown.feedback: corrupted and detached feedback of the recurrent hops."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from hintpose.config import PoseDataParams, PoseParams
from hintpose.errors import ConfigError
from hintpose.models.hintpose import HintPose
from hintpose.topdown.feedback import (
    KEEP,
    SHIFT,
    TWIN,
    FeedbackTraining,
    corrupt_heatmaps,
    mirror_twins,
)

NAMES = ["nose", "left_eye", "right_eye"]


def peaks(heat: torch.Tensor) -> list[tuple[int, int] | None]:
    out: list[tuple[int, int] | None] = []
    for channel in heat:
        if channel.max() <= 0:
            out.append(None)
        else:
            flat = int(channel.argmax())
            out.append((flat // channel.shape[1], flat % channel.shape[1]))
    return out


def test_mirror_twins_pair_left_and_right() -> None:
    assert mirror_twins(NAMES) == (0, 2, 1)


def test_corruption_moves_swaps_and_keeps_exactly() -> None:
    heat = torch.zeros(2, 3, 8, 6)
    heat[0, 0, 2, 2], heat[0, 1, 5, 3], heat[0, 2, 1, 1] = 1.0, 0.7, 0.9
    heat[1] = torch.rand(3, 8, 6)
    plan = torch.zeros(2, 3, 3)
    plan[0, 0] = torch.tensor([SHIFT, 1.0, 2.0])  # 1 px right, 2 down
    plan[0, 1] = torch.tensor([TWIN, 0.0, 0.0])
    plan[0, 2, 0] = KEEP
    out = corrupt_heatmaps(heat, plan, mirror_twins(NAMES))
    assert peaks(out[0]) == [(4, 3), (1, 1), (1, 1)]
    assert out[0, 0].max() == pytest.approx(1.0)
    assert torch.equal(out[0, 2], heat[0, 2]) and torch.equal(out[1], heat[1])
    assert out.dtype == heat.dtype
    far = plan.clone()
    far[0, 0] = torch.tensor([SHIFT, 20.0, 0.0])  # moved out of the map: nothing left
    assert corrupt_heatmaps(heat, far, (0, 2, 1))[0, 0].max() == 0
    with pytest.raises(ValueError, match="plan must be"):
        corrupt_heatmaps(heat, plan[:, :2], (0, 2, 1))


def test_detached_feedback_cuts_the_gradient_between_hops() -> None:
    """feedback_detach: a later hop's loss does not reach the earlier hop's heatmaps through
    the feedback (the report's feedback: it does); the hint block learns either way."""
    torch.manual_seed(0)
    net = HintPose(4, "none", recurrent=True, hops=2, num_joints=3)
    image = torch.rand(2, 3, 32, 24)
    for detach in (False, True):
        net.zero_grad()
        outs = net(image, None, FeedbackTraining(detach, (0, 2, 1)).transform(None))
        back = torch.autograd.grad(outs[-1].sum(), outs[0], retain_graph=True,
                                   allow_unused=True)[0]
        assert (back is None) == detach
        outs[-1].sum().backward()
        assert net.update_block is not None
        assert any(p.grad is not None and p.grad.abs().sum() > 0
                   for p in net.update_block.parameters())


def test_feedback_settings_and_their_checks() -> None:
    assert FeedbackTraining.of(PoseDataParams(), NAMES) is None  # the report's feedback
    fb = FeedbackTraining.of(PoseDataParams(feedback_corrupt=0.2), NAMES)
    assert fb is not None and not fb.detach and fb.twins == (0, 2, 1)
    heat = torch.rand(1, 3, 4, 4, requires_grad=True)
    assert FeedbackTraining(True, (0, 2, 1)).transform(None)(heat).requires_grad is False
    pose = PoseParams()
    with pytest.raises(ConfigError, match="hop_weights gives 2 weights; hops is 3"):
        replace(pose, data=replace(pose.data, hop_weights=(0.5, 1.0)))
    with pytest.raises(ConfigError, match="not all 0"):
        replace(pose, data=replace(pose.data, hop_weights=(0.0, 0.0, 0.0)))
    with pytest.raises(ConfigError, match="feedback_shift"):
        replace(pose, data=replace(pose.data, feedback_shift=(4.0, 1.0)))


def test_each_model_kind_starts_from_its_branch() -> None:
    from hintpose.config import PosePretrainParams
    from hintpose.topdown.params import branch_for

    every = ("cue", "recurrent", "cue_recurrent")
    assert branch_for("point", True, every) == "cue_recurrent"
    assert branch_for("point", True, ("cue",)) == "cue"  # the cue branch, feedback from zero
    assert branch_for("point", False, every) == "cue"
    assert branch_for("none", True, every) == "recurrent"
    assert branch_for("none", True, ("cue",)) is None  # the plain HRNet
    assert branch_for("none", False, every) is None
    pose = PoseParams()
    for bad in (("cue", "cue"), ("rr",)):
        with pytest.raises(ConfigError, match="pretrain.branches must be distinct names"):
            replace(pose, pretrain=PosePretrainParams(branches=bad))
