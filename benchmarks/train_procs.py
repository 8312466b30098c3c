"""Real training throughput of the train stage with 1 and with N DDP processes (runtime.procs).

Runs ``stages/train.py`` as the pipeline does (real crops from data/dataset, loader workers,
validation on 16 persons) for one epoch of ``--samples`` crops, with the params file's pose
settings and the same global batch for every process count; prints the img/s each run logged
(its training loop only, without start-up) and the wall time of the whole command. The last
line printed is one JSON object with every figure. Needs the prepare stage's output.

    PYTHONPATH=. python benchmarks/train_procs.py [--params params.yaml] [--procs 1 2]
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


def run(params: dict, model: str, procs: int, samples: int, batch: int, dataset: Path,
        work: Path) -> dict[str, float]:
    pose = params["pose"]
    pose["train"].update(epochs=1, max_samples=samples, val_samples=16,
                         batch_size=batch // procs)
    params["runtime"].update(procs=procs)
    path = work / f"params_{procs}.yaml"
    path.write_text(yaml.safe_dump(params))
    out = work / f"run_{procs}"
    cmd = [sys.executable, str(ROOT / "stages" / "train.py"), "--model", model, "--params",
           str(path), "--dataset", str(dataset), "--out", str(out / "model"), "--checkpoints",
           str(out / "ckpt"), "--log-dir", str(out / "log")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"train stage failed with procs {procs}:\n{proc.stderr[-2000:]}")
    metrics = json.loads((out / "log" / "metrics.json").read_text())
    return {"img_s": metrics["img_s"], "wall_s": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--dataset", type=Path, default=ROOT / "data" / "dataset")
    ap.add_argument("--model", default="baseline", help="an entry of models")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--samples", type=int, default=960)
    ap.add_argument("--batch", type=int, default=16, help="global batch (split over processes)")
    args = ap.parse_args()
    if not (args.dataset / "dataset.json").is_file():
        sys.exit(f"{args.dataset}: no prepared dataset (run `dvc repro prepare` first)")
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, model {args.model}, "
          f"{args.samples} crops, global batch {args.batch}", flush=True)
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for procs in args.procs:
            params = yaml.safe_load(args.params.read_text())
            figures[procs] = run(params, args.model, procs, args.samples, args.batch,
                                 args.dataset, Path(tmp))
            print(f"procs {procs}: {figures[procs]['img_s']:.1f} img/s in the training loop, "
                  f"{figures[procs]['wall_s']} s for the whole command", flush=True)
    print(json.dumps({"model": args.model, "samples": args.samples, "batch": args.batch,
                      "procs": figures}))


if __name__ == "__main__":
    main()
