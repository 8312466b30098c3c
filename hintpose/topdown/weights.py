"""The weights a pose model starts from: the pretrain stage's plain HRNet (official parameter
names, also an official HRNet checkpoint) and its cue branch (a cue model's state dict)."""

from __future__ import annotations

from pathlib import Path

import torch

from hintpose.errors import ConfigError, HintPoseError
from hintpose.io import save_torch
from hintpose.models.folder import plain_state
from hintpose.models.hintpose import FEEDBACK_PREFIXES, HintPose

#: The pretrain stage's HRNet (official parameter names), the init of every pose model.
BACKBONE_WEIGHTS = "hrnet.pt"
#: The pretrain stage's cue branch (``pose.pretrain.cue_epochs``): a HintPose state dict with
#: the instance-cue block, the init of every cue model.
CUE_WEIGHTS = "cue.pt"

def load_pretrained_backbone(net: HintPose, path: str | Path) -> None:
    """Load an (official) HRNet checkpoint into the backbone; a missing or mismatched file is
    a ConfigError naming it."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: HRNet checkpoint not found")
    try:
        net.load_backbone(file)
    except HintPoseError:
        raise
    except Exception as exc:  # shape/key mismatch or an unreadable file
        msg = str(exc).strip() or type(exc).__name__
        if str(file) not in msg:
            msg = f"{file} does not fit HRNet-W{net.width} ({msg})"
        raise ConfigError(msg[:600]) from None


def load_cue_init(net: HintPose, path: str | Path) -> None:
    """Load the cue branch's weights (backbone and cue block, :data:`CUE_WEIGHTS`) into a cue
    model; its recurrent blocks, if any, keep their zero init. A missing or mismatched file
    is a ConfigError naming it."""
    file = Path(path)
    if not net.takes_cue:
        raise ConfigError(f"{file}: holds a cue model's weights; this model has no cue")
    if not file.is_file():
        raise ConfigError(f"{file}: cue-branch weights not found (run the pretrain stage "
                          "with pose.pretrain.cue_epochs > 0)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
        own = {k for k in net.state_dict() if not k.startswith(FEEDBACK_PREFIXES)}
        if not isinstance(state, dict) or set(state) != own:
            raise ValueError(f"its keys are not those of a HintPose-W{net.width} with a "
                             f"{net.conditioning.name!r} cue input")
        net.load_state_dict(state, strict=False)
    except Exception as exc:
        raise ConfigError(f"{file}: does not fit this cue model "
                          f"({str(exc).strip()[:400]})") from None


def save_backbone(path: Path, net: HintPose) -> None:
    """Write the HRNet part of ``net`` as a state dict with the official HRNet names, which
    ``pose.pretrained`` and :func:`train_pose_model`'s ``init`` load."""
    save_torch(plain_state(net.backbone), path)
