"""hintpose.launch: local multi-process runs with torchrun's environment and one clear failure."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from hintpose.launch import in_process_group, launch_local, threads_per_process

ROOT = Path(__file__).resolve().parents[1]

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
elif action == "bus":
    os.kill(os.getpid(), 7)
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
    assert "error: process 1 of 2 was ended by signal 9 (SIGKILL, killed, out of memory?)" in err


def test_a_bus_error_is_named_as_such(tmp_path: Path, capfd) -> None:
    """SIGBUS (a memory map on a full disk) is not reported as running out of memory."""
    assert launch(tmp_path, "0=bus") == 128 + 7
    err = capfd.readouterr().err.strip().splitlines()
    assert err[-1] == ("error: process 0 of 2 was ended by signal 7 (SIGBUS, a bus error: a "
                       "memory-mapped file on a full disk, or one truncated?)"), err


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


@pytest.mark.slow
def test_a_killed_training_stage_leaves_no_rank_and_resumes(tmp_path: Path) -> None:
    """kill -9 of a two-process train stage (as DVC or CI would): its ranks die with it, and
    the rerun continues after the last finished epoch."""
    import os
    import signal
    import subprocess

    import yaml

    from hintpose.data.params import DatasetParams, SyntheticConfig
    from hintpose.data.prepare import prepare_dataset
    from hintpose.trainlog import read_log

    root = Path(__file__).resolve().parents[1]
    prepare_dataset(tmp_path / "dataset", DatasetParams(
        train_images=8, val_images=2, synthetic=SyntheticConfig()), progress=False)
    params = yaml.safe_load((root / "params.smoke.yaml").read_text())
    params["runtime"].update(procs=2, threads=1)
    params["pose"]["pretrain"].update(epochs=6, max_samples=48, batch_size=4, val_samples=4,
                                      cue_epochs=0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, str(root / "stages/pretrain.py"), "--params",
           str(tmp_path / "params.yaml"), "--dataset", str(tmp_path / "dataset"), "--out",
           str(tmp_path / "out"), "--checkpoints", str(tmp_path / "ckpt"), "--log-dir",
           str(tmp_path / "log")]
    stage = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def children(pid: int) -> list[int]:
        kids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                kids.append(int(stat.parent.name))
        return kids

    deadline = time.time() + 120
    while not (tmp_path / "ckpt" / "last.pt").is_file():
        assert stage.poll() is None and time.time() < deadline, "no epoch finished"
        time.sleep(0.05)
    ranks = children(stage.pid)
    assert len(ranks) == 2
    os.kill(stage.pid, signal.SIGKILL)
    stage.wait()
    deadline = time.time() + 15
    while [r for r in ranks if Path(f"/proc/{r}").exists() and
           Path(f"/proc/{r}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]:
        assert time.time() < deadline, "a rank outlived its killed stage"
        time.sleep(0.1)
    assert not (tmp_path / "out").exists()  # nothing was written after the kill

    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming from" in rerun.stdout and "after epoch" in rerun.stdout, rerun.stdout
    assert (tmp_path / "out" / "hrnet.pt").is_file()
    assert list(read_log(tmp_path / "log")["epoch"]) == [1, 2, 3, 4, 5, 6]
    assert not (tmp_path / "ckpt" / "last.pt").exists()


# A stage under DVC (hintpose.cli.run): with argv[2] "ranks", relaunched as two ranks, rank 0
# holding the folder output; each process writes its pid and sleeps.
ORPHAN_STAGE = """
import os, sys, time
from pathlib import Path
from hintpose.cli import run
from hintpose.io import output_dir
from hintpose.launch import in_process_group, launch_local

def main():
    folder = Path(sys.argv[1])
    if sys.argv[2] == "ranks" and not in_process_group():
        Path(folder, "launcher.pid").write_text(str(os.getpid()))
        sys.exit(launch_local(2, 1))
    if os.environ.get("RANK", "0") != "0":
        Path(folder, "rank1.pid").write_text(str(os.getpid()))
        time.sleep(120)
    with output_dir(folder / "out") as tmp:
        (tmp / "half.txt").write_text("half")
        Path(folder, "stage.pid").write_text(str(os.getpid()))
        time.sleep(120)

run(main)
"""


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize(("shell_stays", "ranks"), [(True, False), (False, False), (True, True)],
                         ids=["shell between", "shell exec'd", "launcher and two ranks"])
def test_killing_dvc_stops_its_stage(tmp_path: Path, shell_stays: bool, ranks: bool) -> None:
    """``kill -9`` of ``dvc`` alone: its stage (run through ``$SHELL -c``, which may stay as
    the stage's parent; a launcher with its ranks) stops within seconds and removes its
    unfinished output, so a second ``dvc repro`` cannot find it running on."""
    import os
    import shlex
    import signal
    import subprocess

    (tmp_path / "stage.py").write_text(ORPHAN_STAGE)
    cmd = (f"{shlex.quote(sys.executable)} {tmp_path / 'stage.py'} {tmp_path} "
           f"{'ranks' if ranks else 'one'}")
    if shell_stays:
        cmd += "; true"
    # the stand-in for dvc: runs the command as DVC does ($SHELL -c, DVC_STAGE set)
    dvc = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; subprocess.run(['/bin/sh', '-c', "
         "sys.argv[1]])", cmd],
        env={**os.environ, "DVC_STAGE": "infer@x", "PYTHONPATH": str(ROOT)},
        stderr=(tmp_path / "stderr.txt").open("w"))
    names = ["stage.pid", *(["launcher.pid", "rank1.pid"] if ranks else [])]
    deadline = time.time() + 60
    while not all((tmp_path / n).is_file() and (tmp_path / n).read_text() for n in names):
        assert dvc.poll() is None and time.time() < deadline, "the stage did not start"
        time.sleep(0.05)
    pids = [int((tmp_path / n).read_text()) for n in names]
    assert (tmp_path / "out.partial").is_dir()
    os.kill(dvc.pid, signal.SIGKILL)
    dvc.wait()
    deadline = time.time() + 30
    while any(_alive(pid) for pid in pids):
        assert time.time() < deadline, "the stage outlived its dvc"
        time.sleep(0.1)
    assert not (tmp_path / "out.partial").exists() and not (tmp_path / "out").exists()
    assert not (tmp_path / "out.partial.lock").exists()
    assert "error: the process that started this stage (python" in (
        tmp_path / "stderr.txt").read_text()
