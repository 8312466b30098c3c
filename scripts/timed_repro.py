"""Run ``dvc repro`` and record its total minutes in metrics/timings.json (a registered DVC
metric) and the wall time of every stage it ran, with the machine, in
metrics/details/timings.json.

    python scripts/timed_repro.py [--out metrics/timings.json] [-- DVC REPRO ARGS ...]

DVC prints ``Running stage '<name>':`` when a stage starts; a stage's time is from its line to
the next stage's (or the end of the run), so it includes DVC's own bookkeeping for that stage
(hashing and caching its outputs). Details: ``{"stages": {name: seconds}, "total_s": seconds,
"machine": {...}, "command": [...]}``. Both files are written only when ``dvc repro``
succeeds.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from hintpose.io import write_json

STAGE_LINE = re.compile(r"^Running stage '([^']+)'")


def machine() -> dict[str, object]:
    """What the times were measured on."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        kib = int(meminfo.read_text().split("MemTotal:", 1)[1].split()[0])
        mem_gib = round(kib / 2**20, 1)
    import torch  # noqa: PLC0415  (only for its version and the device)

    from hintpose.runtime import bf16_supported  # noqa: PLC0415

    # The same "AMD EPYC" name covers CPUs with and without AVX-512 (bf16 autocast): say which.
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "bf16": bf16_supported(torch.device("cpu")),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("metrics/timings.json"),
                    help="the total minutes (a registered DVC metric)")
    ap.add_argument("--details", type=Path, default=Path("metrics/details/timings.json"),
                    help="seconds of every stage that ran, and the machine")
    ap.add_argument("dvc_args", nargs=argparse.REMAINDER,
                    help="arguments after -- go to dvc repro")
    args = ap.parse_args()
    extra = [a for a in args.dvc_args if a != "--"]
    command = ["dvc", "repro", *extra]
    stages: dict[str, float] = {}
    current, mark = None, time.perf_counter()
    start = mark
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            found = STAGE_LINE.match(line)
            if found:
                now = time.perf_counter()
                if current is not None:
                    stages[current] = round(now - mark, 1)
                current, mark = found.group(1), now
    end = time.perf_counter()
    if current is not None:
        stages[current] = round(end - mark, 1)
    if proc.returncode != 0:
        print(f"error: {' '.join(command)} failed (exit {proc.returncode}); "
              f"{args.out} not written", file=sys.stderr)
        sys.exit(proc.returncode)
    record = {"stages": stages, "total_s": round(end - start, 1), "machine": machine(),
              "command": command}
    write_json(args.details, record)
    write_json(args.out, {"total_minutes": round((end - start) / 60, 2)})
    print(f"{len(stages)} stages in {record['total_s']} s -> {args.out}, {args.details}")


if __name__ == "__main__":
    main()
