"""Shared fixtures: the real annotation fixtures, the real photos, small generated datasets."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest

import hintpose  # noqa: F401  (first, so its OpenMP setting precedes torch's import)

ROOT = Path(__file__).resolve().parents[1]
#: Real COCO / CrowdPose / OCHuman samples with their photos (about 1.6 MB, not in the
#: repository): tests that decode the photos skip when it is absent.
REALDATA = Path(os.environ.get("HINTPOSE_REALDATA", ROOT.parent / "shared" / "realdata"))
#: The JSON files of those samples the tests read, kept with the tests (tests/data/realdata/
#: SOURCES.md): tests that need no photo always run.
ANNOTATIONS = Path(__file__).resolve().parent / "data" / "realdata"


@pytest.fixture(scope="session")
def annotations() -> Path:
    """The real annotation/prediction JSON fixtures in tests/data/realdata (always present)."""
    assert ANNOTATIONS.is_dir(), f"{ANNOTATIONS}: test fixtures missing from the repository"
    return ANNOTATIONS


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The folder of real COCO / CrowdPose / OCHuman samples with their photos; skip when it
    is absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real photos not found at {REALDATA} (the ../shared/realdata samples; set "
                    "HINTPOSE_REALDATA to their folder)")
    return REALDATA


def png_claiming(path: Path, width: int, height: int) -> None:
    """A small PNG file whose header says ``width`` x ``height`` (as a 1 MB 32000x32000 PNG
    of one colour would: what is read before decoding)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
