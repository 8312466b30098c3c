"""Shared entry for stage commands: user errors end with one clear line, not a traceback."""

from __future__ import annotations

import argparse
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


def training_parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The arguments every training stage takes: params file, dataset, model folder
    (``data/<name>``), resume checkpoints (``data/checkpoints/<name>``) and dvclive folder."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--out", type=Path, default=Path(f"data/{name}"))
    ap.add_argument("--checkpoints", type=Path, default=Path(f"data/checkpoints/{name}"))
    # torchrun's own parser rejects `--log` (ambiguous with its --log-dir ...): use --log-dir
    ap.add_argument("--log-dir", type=Path, required=True, help="dvclive folder of the run")
    return ap
