"""Run one script as several local processes of a DDP group (``runtime.procs``).

On a CPU, two single-threaded processes that each train on half of a batch keep both cores
busy, where one two-threaded process leaves them waiting on each other between HRNet's many
small ops (measured by ``benchmarks/train_procs.py``: docs/sizing.md). On GPUs it is one
process per GPU, as ``torchrun --nproc_per_node`` would start.

:func:`launch_local` starts the copies with torchrun's environment (``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), so
:func:`hintpose.runtime.distributed_session` joins them into one group. Unlike torchrun it
stops the other processes as soon as one fails and adds no report of its own: the failing
process's one-line error is the message. :func:`watch_parent` stops a stage whose ``dvc``
was killed. This module imports nothing heavy, so a stage can decide to relaunch itself
before it loads torch.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["in_process_group", "launch_local", "signal_hint", "threads_per_process",
           "watch_parent"]

#: Linux prctl option: the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1
#: Seconds between polls of the running processes.
POLL_S = 0.2
#: Seconds rank 0 may take to fail too after another rank failed (see launch_local).
GRACE_S = 3.0
#: Seconds an orphaned stage may take to clean up after SIGTERM before it exits hard.
STOP_GRACE_S = 15.0
#: What a rank ended by these signals most likely ran into.
SIGNAL_HINTS = {
    signal.SIGKILL: "killed, out of memory?",
    signal.SIGBUS: "a bus error: a memory-mapped file on a full disk, or one truncated?",
    signal.SIGSEGV: "a segmentation fault",
}
#: Processes a stage may be started through (DVC runs a stage as ``$SHELL -c cmd``).
SHELLS = frozenset({"sh", "ash", "dash", "bash", "zsh", "ksh", "mksh", "fish", "busybox"})


def in_process_group() -> bool:
    """True inside a process started by :func:`launch_local` or torchrun."""
    return "WORLD_SIZE" in os.environ


def threads_per_process(procs: int, threads: int = 0, cores: int | None = None) -> int:
    """Intra-op threads for each of ``procs`` processes: ``threads`` when set (> 0), else an
    equal share of the machine's cores (at least one)."""
    if procs < 1:
        raise ValueError(f"procs must be >= 1, got {procs}")
    if threads > 0:
        return threads
    return max(1, (cores if cores is not None else os.cpu_count() or 1) // procs)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_local(procs: int, threads: int, argv: Sequence[str] | None = None) -> int:
    """Run ``python argv`` (default: this process's own command line) as ``procs`` ranks of
    one process group on this machine, each with ``OMP_NUM_THREADS=threads``; wait for all.

    Rank 0 writes to this process's stdout and stderr; the other ranks' stderr is kept and
    shown only when one of them fails alone, so an error every rank hits (say, a corrupt
    file) is one message, not one per rank. Returns 0 when every rank succeeded, else the
    exit status of a failed rank (the others are terminated then; a rank ended by a signal
    is reported here, as it could not say so itself, and gives 128 + the signal). Ctrl-C
    terminates them all.
    """
    if procs < 2:
        raise ValueError(f"launch_local needs procs >= 2, got {procs}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    cmd = [sys.executable, *(sys.argv if argv is None else argv)]
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
            "WORLD_SIZE": str(procs), "LOCAL_WORLD_SIZE": str(procs),
            "OMP_NUM_THREADS": str(threads)}
    with contextlib.ExitStack() as stack:
        logs = [None] + [stack.enter_context(tempfile.TemporaryFile("w+b"))
                         for _ in range(1, procs)]
        parent = os.getpid()
        children = [subprocess.Popen(cmd, env={**base, "RANK": str(r), "LOCAL_RANK": str(r)},
                                     stderr=logs[r], preexec_fn=lambda: _die_with(parent))
                    for r in range(procs)]
        try:
            rank, code = _wait_for_failure(children)
            if code == 0:
                return 0
            if rank > 0:
                log = logs[rank]
                assert log is not None
                log.seek(0)
                sys.stderr.write(log.read().decode(errors="replace"))
            if code < 0:
                print(f"error: process {rank} of {procs} was ended by signal {-code} "
                      f"({signal_hint(-code)})", file=sys.stderr)
                return 128 - code
            return code
        finally:
            _stop(children)


def signal_hint(signum: int) -> str:
    """``SIGBUS, a bus error: ...``: a signal's name and what most likely sent it."""
    try:
        sig = signal.Signals(signum)
    except ValueError:
        return "an unknown signal"
    hint = SIGNAL_HINTS.get(sig)
    return f"{sig.name}, {hint}" if hint else sig.name


def _die_with(parent: int) -> None:
    """In a child, before it runs: ask the kernel for SIGKILL when the launching process dies
    (Linux ``prctl(PR_SET_PDEATHSIG)``), so that a stage killed with ``kill -9`` (what DVC, a
    CI runner or a closed terminal may do) takes its ranks with it instead of leaving them to
    train on and write its outputs. Elsewhere the ranks stop when the launcher next polls."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the launcher died before prctl took effect
        os._exit(1)


def _wait_for_failure(children: Sequence[subprocess.Popen[bytes]]) -> tuple[int, int]:
    """(rank, status) of the failed rank to report, or (0, 0) when all succeeded. When
    another rank fails first, rank 0 gets ``GRACE_S`` to fail too: its message is shown."""
    while True:
        codes = [c.poll() for c in children]
        if all(code == 0 for code in codes):
            return 0, 0
        failed = [rank for rank, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            if failed[0] > 0:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    if children[0].wait(timeout=GRACE_S) != 0:
                        return 0, int(children[0].returncode)
            return failed[0], int(codes[failed[0]] or 0)
        time.sleep(POLL_S)


def _stop(children: Sequence[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# --------------------------------------------------------------------------- orphaned stages


def _parent_of(pid: int) -> int | None:
    """The parent pid of ``pid`` (Linux ``/proc``), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def ancestry() -> list[tuple[int, int]]:
    """(pid, parent pid) of this process and of each shell between it and the process that
    started it: DVC runs a stage through ``$SHELL -c``, and a shell that did not exec the
    command outlives a killed ``dvc`` just like the stage would."""
    chain = [(os.getpid(), os.getppid())]
    while len(chain) < 8:
        pid = chain[-1][1]
        parent = _parent_of(pid) if pid > 1 and _command_of(pid) in SHELLS else None
        if parent is None:
            break
        chain.append((pid, parent))
    return chain


def watch_parent(interval: float = 1.0) -> threading.Thread | None:
    """Stop this process once the process that started it (past any shell in between) has
    ended: a ``kill -9`` of ``dvc`` must not leave its stage running on, orphaned, next to
    the stage a second ``dvc repro`` starts. The stop is a SIGTERM to this process (which
    hintpose.cli turns into an exit that removes unfinished outputs; a launcher's ranks go
    with it), then after ``STOP_GRACE_S`` a hard exit. A daemon thread on Linux; None
    elsewhere or when the parent is already init."""
    if not sys.platform.startswith("linux"):
        return None
    chain = ancestry()
    owner = chain[-1][1]
    if owner <= 1:
        return None
    name = _command_of(owner) or "pid"

    def orphaned() -> bool:
        return os.getppid() != chain[0][1] or any(_parent_of(pid) != parent
                                                   for pid, parent in chain[1:])

    def watch() -> None:
        while not orphaned():
            time.sleep(interval)
        with contextlib.suppress(OSError, ValueError):
            print(f"error: the process that started this stage ({name} {owner}) has ended; "
                  "stopping", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(STOP_GRACE_S)
        os._exit(128 + signal.SIGTERM)

    thread = threading.Thread(target=watch, name="hintpose-watch-parent", daemon=True)
    thread.start()
    return thread
