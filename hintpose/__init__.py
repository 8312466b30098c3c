"""HintPose: instance cue and recurrent refinement for top-down pose estimation in crowds."""

import os

# HRNet runs hundreds of small ops per step; with DataLoader workers (or any other process) on
# a 2-core machine, OpenMP threads that spin while waiting stall each other (measured: a W4
# training step took 34 s instead of 1 s). Passive waiting avoids that. It must be set before
# torch loads its OpenMP runtime, which importing hintpose first does; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
