"""hintpose.launch: local multi-process runs with torchrun's environment and one clear failure."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from hintpose.launch import in_process_group, launch_local, threads_per_process

# A rank writes its environment to out/<rank>.txt, then does what argv[2] says for its rank.
SCRIPT = """
import os, sys, time
from pathlib import Path
rank = os.environ["RANK"]
keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS")
Path(sys.argv[1], rank + ".txt").write_text(" ".join(os.environ[k] for k in keys))
action = dict(a.split("=") for a in sys.argv[2].split(",") if a).get(rank, "ok")
if action == "sleep":
    time.sleep(60)
elif action == "fail":
    print("error: rank " + rank + " failed", file=sys.stderr)
    sys.exit(3)
elif action == "kill":
    os.kill(os.getpid(), 9)
"""


def launch(tmp_path: Path, actions: str, procs: int = 2) -> int:
    script = tmp_path / "rank.py"
    script.write_text(SCRIPT)
    return launch_local(procs, 1, [str(script), str(tmp_path), actions])


def test_threads_per_process() -> None:
    assert threads_per_process(2, cores=2) == 1
    assert threads_per_process(2, cores=8) == 4
    assert threads_per_process(4, cores=2) == 1
    assert threads_per_process(2, threads=3, cores=2) == 3
    with pytest.raises(ValueError, match="procs"):
        threads_per_process(0)


def test_ranks_get_torchrun_environment(tmp_path: Path) -> None:
    assert not in_process_group()
    assert launch(tmp_path, "", procs=3) == 0
    envs = [(tmp_path / f"{r}.txt").read_text().split() for r in range(3)]
    assert [e[:3] for e in envs] == [[str(r), str(r), "3"] for r in range(3)]
    assert {e[3] for e in envs} == {"127.0.0.1"} and len({e[4] for e in envs}) == 1
    assert {e[5] for e in envs} == {"1"}


def test_failing_rank_stops_the_others_with_its_message(tmp_path: Path, capfd) -> None:
    t0 = time.perf_counter()
    assert launch(tmp_path, "0=sleep,1=fail") == 3
    assert time.perf_counter() - t0 < 30  # rank 0 was stopped, not waited for (60 s)
    err = capfd.readouterr().err
    assert err.count("error:") == 1 and "rank 1 failed" in err


def test_an_error_of_every_rank_is_shown_once(tmp_path: Path, capfd) -> None:
    assert launch(tmp_path, "0=fail,1=fail") == 3
    err = capfd.readouterr().err
    assert err.count("error:") == 1 and "rank 0 failed" in err


def test_a_rank_ended_by_a_signal_is_reported(tmp_path: Path, capfd) -> None:
    assert launch(tmp_path, "0=sleep,1=kill") == 128 + 9
    err = capfd.readouterr().err
    assert "process 1 of 2 was ended by signal 9" in err


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="procs >= 2"):
        launch_local(1, 1, [sys.executable])
    with pytest.raises(ValueError, match="threads"):
        launch_local(2, 0, [sys.executable])


def test_killing_the_launcher_kills_its_ranks(tmp_path: Path) -> None:
    """``kill -9`` of a stage (DVC, a CI runner) must not leave its ranks training on."""
    import os
    import signal
    import subprocess

    script = tmp_path / "rank.py"
    script.write_text("import os, sys, time\nfrom pathlib import Path\n"
                      "pid = Path(sys.argv[1], os.environ['RANK'] + '.pid')\n"
                      "pid.write_text(str(os.getpid()))\ntime.sleep(120)\n")
    launcher = subprocess.Popen(
        [sys.executable, "-c", "import sys; from hintpose.launch import launch_local; "
         f"sys.exit(launch_local(2, 1, [{str(script)!r}, {str(tmp_path)!r}]))"])
    pids_files = [tmp_path / "0.pid", tmp_path / "1.pid"]
    deadline = time.time() + 60
    while not all(p.is_file() and p.read_text() for p in pids_files):
        assert time.time() < deadline, "the ranks did not start"
        time.sleep(0.1)
    pids = [int(p.read_text()) for p in pids_files]

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        status = Path(f"/proc/{pid}/stat")
        return not (status.is_file() and status.read_text().split()[2] == "Z")

    assert all(alive(pid) for pid in pids)
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()

    deadline = time.time() + 10
    while any(alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids), "a rank outlived its launcher"
