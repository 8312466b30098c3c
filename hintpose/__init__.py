"""HintPose: instance cue and recurrent refinement for top-down pose estimation in crowds."""

import os

# HRNet runs hundreds of small ops per step; with DataLoader workers (or any other process) on
# a 2-core machine, OpenMP threads that spin while waiting stall each other (many times slower
# per step: docs/sizing.md, "Timings of the tooling"). Passive waiting avoids that. It must be
# set before torch loads its OpenMP runtime, which importing hintpose first does; a user's
# value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# tqdm starts (and later ends) a monitor thread with its first bar. A DataLoader that forks its
# workers at that moment can leave a worker deadlocked in CPython's after-fork clean-up (seen
# here: a pretraining hung at the first branch epoch). Bars need no monitor: switch it off.
import tqdm as _tqdm  # noqa: E402

_tqdm.tqdm.monitor_interval = 0
