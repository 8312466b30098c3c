"""Inference speed of the infer stage with 1 and with N processes (runtime.procs).

Runs ``stages/infer.py`` as the pipeline does (a trained model of data/models, the detections
and cues of the committed run) with the params file's settings and ``runtime.procs`` set to each
count (``runtime.threads`` 0: one process gets every core, N processes an equal share), ``--repeat``
times each, and prints the seconds the stage logged for predicting the heatmaps of each box mode
(without start-up, decoding and the cue probe) and the wall time of the whole command. The
last line printed is one JSON object with every figure. Needs the pipeline's outputs.

    PYTHONPATH=. python benchmarks/infer_procs.py [--model icrr_a] [--procs 1 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def run(params: dict, model: str, procs: int, work: Path) -> dict[str, float]:
    params["runtime"].update(procs=procs, threads=0)
    path = work / f"params_{procs}.yaml"
    path.write_text(yaml.safe_dump(params))
    cmd = [sys.executable, str(ROOT / "stages" / "infer.py"), "--params", str(path),
           "--model-dir", str(ROOT / "data" / "models" / model),
           "--dataset", str(ROOT / "data" / "dataset"),
           "--detections", str(ROOT / "data" / "detections" / "val.json"),
           "--cues", str(ROOT / "data" / "cues" / "val.json"),
           "--out", str(work / "infer"), "--details", str(work / "metrics.json")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"infer stage failed with procs {procs}:\n{proc.stderr[-2000:]}")
    metrics = json.loads((work / "metrics.json").read_text())
    return {"det_s": metrics["det"]["seconds"], "det_instances": metrics["det"]["instances"],
            "gt_s": metrics["gt"]["seconds"], "gt_instances": metrics["gt"]["instances"],
            "wall_s": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--model", default="icrr_a", help="a trained entry of models")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    if not (ROOT / "data" / "models" / args.model / "model.pt").is_file():
        sys.exit(f"data/models/{args.model}: no trained model (run `dvc repro` first)")
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, model {args.model}",
          flush=True)
    figures: dict[int, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for procs in args.procs:
                params = yaml.safe_load(args.params.read_text())
                run_ = run(params, args.model, procs, Path(tmp))
                figures.setdefault(procs, []).append(run_)
                print(f"procs {procs}: {run_['det_instances']} det instances in "
                      f"{run_['det_s']} s, {run_['gt_instances']} GT-box instances in "
                      f"{run_['gt_s']} s; {run_['wall_s']} s for the whole command", flush=True)
    print(json.dumps({"model": args.model, "procs": figures}))


if __name__ == "__main__":
    main()
