"""Shared entry for stage commands: user errors end with one clear line, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from hintpose.errors import HintPoseError


def run(main: Callable[[], None]) -> None:
    """Call ``main``; a HintPoseError prints ``error: <message>`` and exits with status 1."""
    try:
        main()
    except HintPoseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
