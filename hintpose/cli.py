"""Shared entry for stage commands: user errors end with one clear line, not a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from hintpose.errors import HintPoseError


def run(main: Callable[[], None]) -> None:
    """Call ``main``; a HintPoseError prints ``error: <message>`` and exits with status 1."""
    try:
        main()
    except HintPoseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling and ``os.replace``: a reader
    (or a killed stage) never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
