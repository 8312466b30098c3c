"""Files: atomic writes, JSON and CSV, preallocated arrays, digests, partial output folders.

Every output file goes through :func:`write_atomic`: the bytes land in a temporary sibling
first and ``os.replace`` moves them in, so a reader, a killed stage or a full disk never
leaves half a file under the real name (and the temporary file is removed when the write
fails). A folder output is built in ``<out>.partial`` (:func:`output_dir`, or
:func:`start_dir` then :func:`finish_dir`) under an exclusive lock, ``<out>.partial.lock``,
that the process holds until the folder is finished or removed: a second run writing the
same output stops with one error instead of sharing the folder, and a failure removes the
partial folder (at the latest when the process exits).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hintpose.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: Seconds a run waits for another one's lock on an output before it gives up (a run whose
#: parent was killed stops within a second or two, see hintpose.cli).
LOCK_WAIT_S = 5.0


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


def write_csv(path: str | Path, frame: pd.DataFrame, index: bool = False,
              float_format: str | None = None) -> None:
    """Write a table as CSV atomically (``frame.to_csv``); a full disk is a DataError naming
    ``path``, which keeps its earlier content."""
    write_atomic(path, lambda p: frame.to_csv(p, index=index, float_format=float_format))


def save_torch(obj: Any, path: str | Path) -> None:
    """``torch.save`` of a plain state dict (or checkpoint dict) to ``path``, atomically."""
    import torch

    write_atomic(path, lambda p: torch.save(obj, p))


def open_npy(path: str | Path, shape: Sequence[int], dtype: Any = "float16") -> np.memmap:
    """A new ``.npy`` file of ``shape`` and ``dtype`` (zeros), memory-mapped for writing. Its
    data blocks are allocated on disk before it is mapped (``posix_fallocate``), so a disk
    too small for it is a DataError naming ``path`` now, not a SIGBUS when a page of the map
    is written out later; the file is removed then."""
    import numpy as np

    path, dtype = Path(path), np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    nbytes = math.prod(shape) * dtype.itemsize
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": shape}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            f.flush()
            if nbytes:
                try:
                    os.posix_fallocate(f.fileno(), f.tell(), nbytes)
                except (OSError, AttributeError) as exc:  # no posix_fallocate on macOS
                    if isinstance(exc, OSError) and exc.errno not in (errno.EOPNOTSUPP,
                                                                      errno.EINVAL):
                        raise  # (a file system that cannot preallocate maps it sparse)
                    f.truncate(f.tell() + nbytes)
        return np.lib.format.open_memmap(path, mode="r+")
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise DataError(f"{path}: cannot be written ({exc.strerror or exc}; "
                        f"{nbytes / 2**30:.2f} GiB needed)") from None


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """Parse a JSON file; a missing, malformed or absurdly nested file is a DataError naming
    it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        with path.open("rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: malformed JSON ({exc})") from None
    except RecursionError:
        raise DataError(f"{path}: malformed JSON (nested too deeply)") from None


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``sha256`` for weights, ``md5`` as DVC for data files)."""
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def finite_number(value: Any) -> bool:
    """True for an int or float (not a bool) that is finite: what every number read from a
    JSON file must be."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


# --------------------------------------------------------------------------- folder outputs

#: Partial folders this process holds the lock of: absolute path -> (lock fd, owner pid).
_HELD: dict[str, tuple[int, int]] = {}
_AT_EXIT: list[Callable[[], None]] = []


def partial_dir(out: str | Path) -> Path:
    """Where a folder output ``out`` is built before it replaces ``out``: ``<out>.partial``."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def lock_file(out: str | Path) -> Path:
    """The lock of ``out``'s :func:`partial_dir`: ``<out>.partial.lock``, there while a run
    writes ``out``."""
    out = Path(out)
    return out.with_name(out.name + ".partial.lock")


def _key(out: Path) -> str:
    """The registry key of ``out``'s partial folder (one per folder, however it is named)."""
    return os.path.join(os.path.realpath(out.parent), out.name + ".partial")


def _holder(lock: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f"process {int(lock.read_text().strip())}"
    return "another process"


def _acquire(out: Path) -> None:
    """Lock ``out``'s partial folder for this process (waiting up to ``LOCK_WAIT_S``)."""
    key = _key(out)
    held = _HELD.get(key)
    if held is not None and held[1] == os.getpid():
        return
    lock = lock_file(out)
    deadline = time.monotonic() + LOCK_WAIT_S
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise DataError(f"{out}: another run ({_holder(lock)}) is writing it; "
                                    "wait for that run to end, or stop it") from None
                time.sleep(0.1)
                continue
            try:  # the earlier holder may have removed the file after we opened it
                same = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError as exc:
        raise DataError(f"{lock}: cannot be written ({exc.strerror or exc})") from None
    if not _AT_EXIT:
        _AT_EXIT.append(atexit.register(_abandon_all))
    _HELD[key] = (fd, os.getpid())


def _release(out: Path) -> None:
    held = _HELD.pop(_key(out), None)
    if held is None:
        return
    fd, owner = held
    if owner == os.getpid():  # removed while still locked: a waiting run locks a new file
        with contextlib.suppress(OSError):
            os.unlink(lock_file(out))
    os.close(fd)


def start_dir(out: str | Path) -> Path:
    """A fresh, empty :func:`partial_dir` of ``out`` (left-overs of a killed run removed),
    locked for this process; a DataError when another run holds it."""
    out = Path(out)
    _acquire(out)
    tmp = partial_dir(out)
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    except OSError as exc:
        _release(out)
        raise DataError(f"{tmp}: cannot be created ({exc.strerror or exc})") from None
    return tmp


def finish_dir(out: str | Path) -> None:
    """Replace the folder ``out`` by its complete :func:`partial_dir` and release its lock."""
    out = Path(out)
    try:
        shutil.rmtree(out, ignore_errors=True)
        partial_dir(out).rename(out)
    except OSError as exc:  # the partial folder stays locked: its run's exit removes it
        raise DataError(f"{out}: cannot be replaced by {partial_dir(out).name} "
                        f"({exc.strerror or exc})") from None
    _release(out)


def abandon_dir(out: str | Path) -> None:
    """Remove the :func:`partial_dir` of ``out`` that this process started and release its
    lock; nothing when this process holds no such folder."""
    out = Path(out)
    held = _HELD.get(_key(out))
    if held is None or held[1] != os.getpid():
        return
    shutil.rmtree(partial_dir(out), ignore_errors=True)
    _release(out)


@contextlib.contextmanager
def output_dir(out: str | Path) -> Iterator[Path]:
    """Build the folder output ``out``: yields its fresh, locked :func:`partial_dir`, which
    replaces ``out`` when the block ends normally and is removed on any exception (Ctrl-C
    and, under hintpose.cli, SIGTERM included), leaving ``out`` as it was."""
    tmp = start_dir(out)
    owner = os.getpid()
    try:
        yield tmp
        finish_dir(out)
    except BaseException:
        if os.getpid() == owner:  # not in a forked worker that unwinds a copy of this frame
            abandon_dir(out)
        raise


def _abandon_all() -> None:
    """At exit: remove every partial folder this process started but did not finish."""
    for key in list(_HELD):
        abandon_dir(Path(key[: -len(".partial")]))
