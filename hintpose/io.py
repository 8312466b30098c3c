"""Files: atomic writes, JSON reading and writing, file digests (one helper of each kind).

Every output goes through :func:`write_atomic`: the bytes land in a temporary sibling first and
``os.replace`` moves them in, so a reader, a killed stage or a full disk never leaves half a
file under the real name (and the temporary file is removed when the write fails).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hintpose.errors import DataError


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then move it onto ``path``. A
    write that fails (a full disk, a read-only folder) is a DataError naming ``path``; the
    temporary file is removed and ``path`` keeps its earlier content."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise DataError(f"{path}: cannot be written ({exc.strerror or exc})") from None
    except RuntimeError as exc:  # torch.save reports a failed write as a RuntimeError
        raise DataError(f"{path}: cannot be written ({str(exc)[:200]})") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    write_atomic(path, lambda p: p.write_text(text))


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON (one trailing newline) atomically."""
    write_text_atomic(path, json.dumps(obj, indent=indent) + "\n")


def save_torch(obj: Any, path: str | Path) -> None:
    """``torch.save`` of a plain state dict (or checkpoint dict) to ``path``, atomically."""
    import torch

    write_atomic(path, lambda p: torch.save(obj, p))


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """Parse a JSON file; a missing or malformed file is a DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        with path.open("rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: malformed JSON ({exc})") from None


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``sha256`` for weights, ``md5`` as DVC for data files)."""
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def finite_number(value: Any) -> bool:
    """True for an int or float (not a bool) that is finite: what every number read from a
    JSON file must be."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def partial_dir(out: str | Path) -> Path:
    """Where a folder output ``out`` is built before it replaces ``out``: ``<out>.partial``."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def start_dir(out: str | Path) -> Path:
    """A fresh, empty :func:`partial_dir` of ``out`` (left-overs of a killed run removed)."""
    tmp = partial_dir(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def finish_dir(out: str | Path) -> None:
    """Replace the folder ``out`` by its complete :func:`partial_dir`."""
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    partial_dir(out).rename(out)
