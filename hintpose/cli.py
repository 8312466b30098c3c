"""Shared entry for stage commands: user errors end with one clear line, not a traceback."""

from __future__ import annotations

import argparse
import errno
import os
import re
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from hintpose.errors import HintPoseError

#: errno values of a full disk (or quota), and how their message reads.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE_TEXT = re.compile(rf"\[Errno (?:{'|'.join(map(str, NO_SPACE))})\][^:\n]*"
                            r"(?:: '([^'\n]+)')?")


def run(main: Callable[[], None]) -> None:
    """Call ``main`` as a stage: a HintPoseError prints ``error: <message>`` and exits with
    status 1, and so does a full disk anywhere (``error: <file>: no space left on device``).
    SIGTERM becomes an exit that runs the cleanup of unfinished outputs (hintpose.io); under
    DVC (``DVC_STAGE`` set) the stage stops when ``dvc`` has ended (hintpose.launch)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)
    if "DVC_STAGE" in os.environ:
        from hintpose.launch import watch_parent

        watch_parent()
    try:
        main()
    except HintPoseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        full = _no_space(exc)
        if full is None:
            raise
        print(f"error: {full}no space left on device", file=sys.stderr)
        sys.exit(1)


def _terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (a launcher stopping its ranks, an orphaned stage): exit through Python, so
    that ``finally`` blocks and exit hooks remove unfinished outputs. A second one kills."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise SystemExit(128 + signum)


def _no_space(exc: BaseException) -> str | None:
    """``"<file>: "`` (or ``""`` when unnamed) if ``exc`` or an exception it was raised from
    is a full-disk OSError; None otherwise."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in NO_SPACE:
            name = e.filename if e.filename is not None else e.filename2
            if name is None:
                return ""
            return f"{os.fsdecode(name) if isinstance(name, bytes) else name}: "
        # re-raised from a data loader worker, only its text is left: "[Errno 28] ...: 'file'"
        found = _NO_SPACE_TEXT.search(str(e)) if isinstance(e, OSError | RuntimeError) else None
        if found:
            return f"{found.group(1)}: " if found.group(1) else ""
        todo += [e.__cause__, e.__context__]
    return None


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
