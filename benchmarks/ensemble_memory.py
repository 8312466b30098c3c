"""Peak memory of the heatmap ensemble for two dataset sizes (the larger at least 10x).

Builds three synthetic ``infer`` member folders in a temporary directory (two cue models with
one to three cues per box, one model without a cue input, so the per-box broadcast is
exercised), with 17 x 32 x 24 float16 heatmaps (a 128x96 input), and runs the ensemble of
each size in a fresh process, printing its peak resident set size (VmHWM), the RSS after
imports, the heatmap bytes on disk and the time. Streaming keeps the peak independent of the
number of instances up to the small per-instance results; loading every member instead would
take the heatmap bytes.

    python benchmarks/ensemble_memory.py [--boxes 1000 10000] [--chunk 256]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hintpose.topdown.outputs import INDEX_COLUMNS, inference_files  # noqa: E402

SHAPE = (17, 32, 24)
BOXES_PER_IMAGE = 8


def write_member(folder: Path, boxes: int, cue: bool, seed: int, rows: int = 2048) -> int:
    """A member folder for ``boxes`` boxes (cue models: one to three cues per box, the same
    for every cue member); heatmaps written in blocks, so building it needs little memory."""
    folder.mkdir(parents=True, exist_ok=True)
    cues = np.random.default_rng(0).integers(1, 4, boxes) if cue else np.ones(boxes, int)
    box_index = np.repeat(np.arange(boxes), cues)
    cue_index = (np.concatenate([np.arange(c) for c in cues]) if cue
                 else np.full(boxes, -1))
    n = len(box_index)
    b = box_index.astype(np.float64)
    frame = pd.DataFrame({
        "image_id": box_index // BOXES_PER_IMAGE + 1, "box_index": box_index,
        "cue_index": cue_index, "box_x": b % 200, "box_y": b % 100, "box_w": 60.0,
        "box_h": 120.0, "box_score": 0.9, "cue_x": np.where(cue_index >= 0, b % 200 + 30,
                                                             np.nan),
        "cue_y": np.where(cue_index >= 0, b % 100 + 60, np.nan), "center_x": b % 200 + 30,
        "center_y": b % 100 + 60, "size_w": 120.0, "size_h": 160.0})
    files = inference_files(folder, "det")
    frame[list(INDEX_COLUMNS)].to_csv(files["index"], index=False)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)),
              "fortran_order": False, "shape": (n, *SHAPE)}
    rng = np.random.default_rng(seed)
    with files["heatmaps"].open("wb") as f:  # plain writes: this process stays small
        np.lib.format.write_array_header_1_0(f, header)
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            f.write(rng.random((stop - start, *SHAPE), dtype=np.float32)
                    .astype(np.float16).tobytes())
    return n


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM; ru_maxrss where /proc is missing, which
    on Linux may start from the parent's peak)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(root: Path, chunk: int) -> None:
    """Run the ensemble on the members under ``root`` and print a JSON line."""
    import hintpose  # noqa: F401
    from hintpose.config import EvalParams
    from hintpose.ensemble import Member, run_ensemble

    after_imports = peak_rss_mb()
    members = [Member(name, root / name, 1.0) for name in ("ic", "icrr", "rr")]
    t0 = time.perf_counter()
    out = run_ensemble(members, "det", EvalParams(), chunk=chunk)
    peak = peak_rss_mb()
    print(json.dumps({"instances": out.stats["instances"], "results": len(out.results),
                      "peak_rss_mb": round(peak, 1), "rss_after_imports_mb":
                      round(after_imports, 1), "seconds": round(time.perf_counter() - t0, 2)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boxes", type=int, nargs=2, default=[1000, 10000])
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.chunk)
        return
    print(f"{'boxes':>7} {'instances':>10} {'heatmaps on disk':>17} {'peak RSS':>9} "
          f"{'RSS after imports':>18} {'seconds':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for boxes in args.boxes:
            root = Path(tmp) / str(boxes)
            disk = 0
            for seed, (name, cue) in enumerate((("ic", True), ("icrr", True), ("rr", False))):
                n = write_member(root / name, boxes, cue, seed)
                disk += n * int(np.prod(SHAPE)) * 2
            line = subprocess.run(
                [sys.executable, __file__, "--child", str(root), "--chunk", str(args.chunk)],
                check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            r = json.loads(line)
            print(f"{boxes:>7} {r['instances']:>10} {disk / 2**20:>13.0f} MiB "
                  f"{r['peak_rss_mb']:>5.0f} MiB {r['rss_after_imports_mb']:>14.0f} MiB "
                  f"{r['seconds']:>8.1f}", flush=True)
            for path in root.rglob("*.npy"):
                path.unlink()


if __name__ == "__main__":
    main()
