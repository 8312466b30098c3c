"""hintpose.io and hintpose.cli under faults: partial output folders are locked and cleaned up,
a full disk is one error naming the file, tables and arrays are written safely."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hintpose import io
from hintpose.errors import DataError
from hintpose.io import (
    finish_dir,
    lock_file,
    open_npy,
    output_dir,
    partial_dir,
    read_json,
    start_dir,
    write_csv,
)

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

# A stage: under hintpose.cli.run, builds argv[1] as a folder output and then does argv[2].
STAGE = """
import errno, os, sys, time
from pathlib import Path
from hintpose.cli import run
from hintpose.errors import DataError
from hintpose.io import output_dir, start_dir

out, action = Path(sys.argv[1]), sys.argv[2]

def main():
    if action == "start-and-fail":  # start_dir without the context manager, then an error
        (start_dir(out) / "half.txt").write_text("half")
        raise DataError(f"{out}: something is wrong")
    if action == "full-disk":
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "index.csv"))
    if action == "full-disk-in-a-worker":  # as torch re-raises a DataLoader worker's error
        raise OSError("Caught OSError in DataLoader worker process 0.\\nOriginal Traceback:\\n"
                      f"OSError: [Errno 28] No space left on device: '{out}/heatmaps.npy'\\n")
    if action == "full-disk-chained":
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise RuntimeError("write failed") from exc
    with output_dir(out) as tmp:
        (tmp / "half.txt").write_text("half")
        Path(str(out) + ".started").write_text(str(os.getpid()))
        time.sleep(60)

run(main)
"""


def stage(tmp_path: Path, action: str, out: Path | None = None, **kwargs) -> subprocess.Popen:
    script = tmp_path / "stage.py"
    script.write_text(STAGE)
    out = out or tmp_path / "out"
    return subprocess.Popen([sys.executable, str(script), str(out), action], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def wait_started(out: Path, proc: subprocess.Popen) -> None:
    deadline = time.time() + 60
    while not Path(str(out) + ".started").is_file():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)


def earlier(out: Path) -> Path:
    out.mkdir(parents=True)
    (out / "result.txt").write_text("earlier")
    return out


def left_over(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(out.name + "."))


def test_output_dir_replaces_on_success_and_removes_on_failure(tmp_path: Path) -> None:
    out = earlier(tmp_path / "out")
    with pytest.raises(KeyboardInterrupt), output_dir(out) as tmp:
        assert tmp == partial_dir(out) and lock_file(out).is_file()
        (tmp / "result.txt").write_text("half")
        raise KeyboardInterrupt
    assert (out / "result.txt").read_text() == "earlier" and left_over(out) == []
    with output_dir(out) as tmp:
        (tmp / "result.txt").write_text("new")
    assert (out / "result.txt").read_text() == "new" and left_over(out) == []


FAILURES = {
    # action: (exit status, the error line: {out} is the output folder)
    "start-and-fail": (1, "error: {out}: something is wrong"),
    "full-disk": (1, "error: {out}/index.csv: no space left on device"),
    "full-disk-chained": (1, "error: no space left on device"),
    "full-disk-in-a-worker": (1, "error: {out}/heatmaps.npy: no space left on device"),
}


@pytest.mark.parametrize("action", sorted(FAILURES))
def test_a_failed_stage_is_one_line_and_leaves_no_partial_folder(tmp_path: Path,
                                                                 action: str) -> None:
    out = earlier(tmp_path / "out")
    proc = stage(tmp_path, action)
    stdout, stderr = proc.communicate(timeout=60)
    code, line = FAILURES[action]
    assert proc.returncode == code and stderr == line.format(out=out) + "\n", stderr
    assert (out / "result.txt").read_text() == "earlier" and left_over(out) == []


def test_sigterm_removes_the_partial_folder(tmp_path: Path) -> None:
    out = earlier(tmp_path / "out")
    proc = stage(tmp_path, "hold")
    wait_started(out, proc)
    assert partial_dir(out).is_dir()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert (out / "result.txt").read_text() == "earlier"
    assert left_over(out) == ["out.started"]


def test_a_second_writer_gets_one_error_instead_of_sharing(tmp_path: Path,
                                                          monkeypatch) -> None:
    monkeypatch.setattr(io, "LOCK_WAIT_S", 0.3)
    out = tmp_path / "out"
    proc = stage(tmp_path, "hold")
    try:
        wait_started(out, proc)
        with pytest.raises(DataError) as info:
            start_dir(out)
        assert str(info.value) == (f"{out}: another run (process {proc.pid}) is writing it; "
                                   "wait for that run to end, or stop it")
        assert (partial_dir(out) / "half.txt").is_file()  # the other run's folder, untouched
    finally:
        proc.kill()
        proc.communicate()
    # a killed run's lock goes with it: the next run takes over and clears its left-overs
    tmp = start_dir(out)
    assert list(tmp.iterdir()) == []
    finish_dir(out)
    assert left_over(out) == ["out.started"]


def test_open_npy_allocates_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "heatmaps.npy"
    arr = open_npy(path, (100, 17, 64, 48), np.float16)
    assert arr.shape == (100, 17, 64, 48) and arr.dtype == np.float16 and not arr.any()
    assert os.stat(path).st_blocks * 512 >= arr.nbytes  # not sparse: no SIGBUS on a full disk
    arr[3] = 1.5
    arr.flush()
    del arr
    loaded = np.load(path)
    assert loaded.shape == (100, 17, 64, 48) and loaded[3].min() == 1.5
    assert loaded.sum(dtype=np.float64) == 1.5 * 17 * 64 * 48
    assert open_npy(tmp_path / "empty.npy", (0, 17, 64, 48)).shape == (0, 17, 64, 48)


def test_open_npy_on_a_full_disk_is_one_error(tmp_path: Path, monkeypatch) -> None:
    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    path = tmp_path / "heatmaps.npy"
    with pytest.raises(DataError) as info:
        open_npy(path, (1000, 17, 64, 48))
    assert str(info.value) == (f"{path}: cannot be written (No space left on device; "
                               "0.10 GiB needed)")
    assert not path.exists()


def test_write_csv_is_atomic_and_names_a_full_disk(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "index.csv"
    write_csv(path, pd.DataFrame({"a": [1, 2], "b": [0.5, 0.25]}))
    assert path.read_text() == "a,b\n1,0.5\n2,0.25\n"

    def full(self, target, **kwargs) -> None:
        Path(target).write_text("a,b\n1,")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    with pytest.raises(DataError, match=r"index\.csv: cannot be written \(No space left on dev"):
        write_csv(path, pd.DataFrame({"a": [3]}))
    assert path.read_text() == "a,b\n1,0.5\n2,0.25\n" and [p.name for p in tmp_path.iterdir()] == [
        "index.csv"]


def test_deeply_nested_json_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=r"deep\.json: malformed JSON \(nested too deeply\)"):
        read_json(path)
