"""The weights a pose model starts from: the pretrain stage's plain HRNet (official parameter
names, also an official HRNet checkpoint) and its branches (HintPose state dicts of a cue, a
recurrent or a cue + recurrent model; hintpose.topdown.pretraining)."""

from __future__ import annotations

from pathlib import Path

import torch

from hintpose.errors import ConfigError, HintPoseError
from hintpose.io import save_torch
from hintpose.models.folder import plain_state
from hintpose.models.hintpose import FEEDBACK_PREFIXES, HintPose

#: The pretrain stage's HRNet (official parameter names), the init of every pose model.
BACKBONE_WEIGHTS = "hrnet.pt"
#: Parameter-name prefixes of the blocks a branch may lack (they keep their zero init).
ADDED_PREFIXES = ("cue_block.", *FEEDBACK_PREFIXES)

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


def load_branch_init(net: HintPose, path: str | Path) -> None:
    """Load a branch's weights (:data:`BRANCH_WEIGHTS`) into ``net``: the backbone and the
    added blocks the branch has; the others (a cue branch's feedback blocks in a cue +
    recurrent model) keep their zero init. A missing file, or one with parameters ``net``
    lacks (a cue branch for a model without a cue), is a ConfigError naming it."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: branch weights not found (run the pretrain stage with "
                          "pose.pretrain.cue_epochs > 0 and the branch in pose.pretrain.branches)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"{file}: not a readable branch checkpoint "
                          f"({str(exc).strip()[:300]})") from None
    keys = set(net.state_dict())
    if not isinstance(state, dict):
        raise ConfigError(f"{file}: not a branch checkpoint (a state dict)")
    extra = sorted(k for k in state if k not in keys)
    if any(k.startswith("cue_block.") for k in extra) and not net.takes_cue:
        raise ConfigError(f"{file}: holds a cue model's weights; this model has no cue")
    missing = sorted(k for k in keys - set(state) if not k.startswith(ADDED_PREFIXES))
    if extra or missing:
        raise ConfigError(f"{file}: does not fit this model (its keys are not those of a "
                          f"HintPose-W{net.width}; unexpected {extra[:3]}, missing "
                          f"{missing[:3]})")
    try:
        net.load_state_dict(state, strict=False)
    except Exception as exc:  # shapes
        raise ConfigError(f"{file}: does not fit this model ({str(exc).strip()[:400]})") from None


def save_backbone(path: Path, net: HintPose) -> None:
    """Write the HRNet part of ``net`` as a state dict with the official HRNet names, which
    ``pose.pretrained`` and :func:`train_pose_model`'s ``init`` load."""
    save_torch(plain_state(net.backbone), path)
