"""Shared fixtures: paths to the real samples and small generated datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import hintpose  # noqa: F401  (first, so its OpenMP setting precedes torch's import)

ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("HINTPOSE_REALDATA", ROOT.parent / "shared" / "realdata"))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The folder of real COCO / CrowdPose / OCHuman samples; skip when it is absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real-data samples not found at {REALDATA} (set HINTPOSE_REALDATA)")
    return REALDATA
