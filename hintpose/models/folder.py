"""A trained network's folder: ``model.pt`` (a plain state dict, loaded with
``weights_only=True``) and ``model.json`` (what rebuilds the network and prepares its inputs).
Every network of the pipeline is stored this way; each model class rebuilds itself from the
config (``ModelSpec.build`` for pose models, ``MultiPoseNet.from_config``,
``PoseFix.from_config``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hintpose.errors import DataError, HintPoseError
from hintpose.io import read_json, save_torch, write_json

if TYPE_CHECKING:  # torch is imported where it is used: a stage may read model.json first
    import torch
    from torch import nn

MODEL_WEIGHTS = "model.pt"
MODEL_CONFIG = "model.json"


def plain_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """A state dict of contiguous CPU tensors (what ``model.pt`` files hold)."""
    return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}


def save_network(out_dir: Path, net: nn.Module, config: dict[str, Any]) -> None:
    """A model folder: ``model.pt`` (plain state dict) and ``model.json`` (what rebuilds the
    network and prepares its inputs)."""
    save_torch(plain_state(net), Path(out_dir) / MODEL_WEIGHTS)
    write_json(Path(out_dir) / MODEL_CONFIG, config)


def read_config(model_dir: Path, what: str, stage: str) -> dict[str, Any]:
    """The ``model.json`` of a model folder (no torch needed)."""
    return read_json(Path(model_dir) / MODEL_CONFIG, f"{what} description (run the {stage} "
                     "stage)")


def load_network(model_dir: Path, build: Callable[[dict[str, Any]], nn.Module], what: str,
                 stage: str, device: str | torch.device = "cpu") -> tuple[Any, dict[str, Any]]:
    """Rebuild the network of a model folder written by :func:`save_network` with ``build``:
    (network in eval mode on ``device``, config). A missing, unreadable or mismatched file is
    a DataError naming it (``what``: the network's name; ``stage``: the stage that writes
    the folder)."""
    model_dir = Path(model_dir)
    config = read_config(model_dir, what, stage)
    try:
        net = build(config)
    except HintPoseError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{model_dir / MODEL_CONFIG}: not a {what} description "
                        f"({exc!r})") from None
    weights = model_dir / MODEL_WEIGHTS
    if not weights.is_file():
        raise DataError(f"{weights}: {what} weights not found (run the {stage} stage)")
    import torch

    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{weights}: not a readable state dict (truncated or not written by "
                        f"the {stage} stage: {str(exc)[:200]})") from None
    try:
        net.load_state_dict(state)
    except Exception as exc:
        raise DataError(f"{weights}: does not fit {MODEL_CONFIG} ({str(exc)[:300]})") from None
    return net.to(device).eval(), config
