"""Which execution path trains the default pose model fastest on this CPU, and on an AVX2 one.

Each setting runs in its own process (the CPU kind is fixed when torch loads): the default
network of params.yaml (pose.width, modules, blocks, input size) trained on random inputs
(forward + backward + Adam, hintpose.topdown.training.forward_losses) in

- fp32 with contiguous tensors, fp32 with channels_last, bf16 autocast + channels_last;
- batches of 8, 16 and 32 per step (img/s, so batches compare);
- one process with 2 threads and with 1 thread;
- ``torch.compile`` (inductor), its compile time reported apart from the step rate;

natively and as an AVX2 CPU (``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``, bf16 off:
an approximation of a real AVX2 machine, whose caches and clocks differ). With ``--profile``
one fp32 step per CPU kind is also broken down by torch.profiler into convolutions, batch
norm, elementwise, optimizer and the rest. The last line printed is one JSON object with every
figure and each process's ``cpu_capability``.

    PYTHONPATH=. python benchmarks/cpu_paths.py [--params params.yaml] [--iters 8] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
#: (name, bf16, channels_last, batch, threads, compile)
SETTINGS = [
    ("fp32", False, False, 8, 2, False),
    ("fp32_channels_last", False, True, 8, 2, False),
    ("bf16_channels_last", True, True, 8, 2, False),
    ("fp32_batch16", False, False, 16, 2, False),
    ("fp32_batch32", False, False, 32, 2, False),
    ("fp32_1thread", False, False, 8, 1, False),
    ("fp32_compile", False, False, 8, 2, True),
]
#: torch.profiler op names -> the part of a step they belong to.
PARTS = {"conv": ("conv", "mkldnn_convolution"), "batch_norm": ("batch_norm", "native_batch_norm"),
         "optimizer": ("_fused_adam", "adam", "optimizer"),
         "elementwise": ("add", "mul", "relu", "threshold", "sub", "div", "mse", "upsample",
                         "cat", "copy_", "fill_", "zero_")}


def child(args: argparse.Namespace) -> None:
    """One setting in this process: prints one JSON line."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from train_throughput import make_step

    from hintpose.config import load_params

    torch.set_num_threads(args.threads)
    pose = load_params(args.params).pose
    size = (pose.data.input_width, pose.data.input_height)
    step, batch = make_step(pose.width, size, args.bf16, args.channels_last, 1, args.batch,
                            layout=(pose.modules, pose.blocks), compile=args.compile)
    t0 = time.perf_counter()
    step()  # the first step: compilation, oneDNN primitive creation
    first = time.perf_counter() - t0
    for _ in range(2):
        step()
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    out = {"img_s": round(batch / times[len(times) // 2], 1), "first_step_s": round(first, 2),
           "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        total, parts = 0.0, dict.fromkeys([*PARTS, "other"], 0.0)
        for ev in prof.key_averages():
            if not ev.key.startswith("aten::") or ev.self_cpu_time_total <= 0:
                continue
            name = ev.key[len("aten::"):]
            part = next((p for p, keys in PARTS.items() if any(k in name for k in keys)),
                        "other")
            parts[part] += ev.self_cpu_time_total
            total += ev.self_cpu_time_total
        out["profile_share"] = {p: round(v / max(total, 1e-9), 3) for p, v in parts.items()}
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for flag in ("--bf16", "--channels-last", "--compile"):
        ap.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=8, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    results: dict[str, dict] = {}
    for kind, extra in (("native", {}), ("avx2", AVX2)):
        for name, bf16, cl, batch, threads, comp in SETTINGS:
            if bf16 and extra:
                continue  # no fast bf16 kernels there: the runtime would not pick it
            cmd = [sys.executable, __file__, "--child", "--params", str(args.params),
                   "--iters", str(args.iters), "--batch", str(batch), "--threads", str(threads)]
            cmd += ["--bf16"] * bf16 + ["--channels-last"] * cl + ["--compile"] * comp
            if args.profile and name == "fp32":
                cmd.append("--profile")
            env = {**os.environ, **extra, "PYTHONPATH": str(ROOT)}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                results[f"{kind}/{name}"] = {"error": proc.stderr.strip().splitlines()[-1]}
            else:
                results[f"{kind}/{name}"] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{kind:>6} {name:>20}: {results[f'{kind}/{name}']}", flush=True)
    for kind in ("native", "avx2"):
        base = results.get(f"{kind}/fp32", {}).get("img_s")
        if base:
            results[f"{kind}/ratios_to_fp32"] = {
                name: round(results[f"{kind}/{name}"]["img_s"] / base, 3)
                for name, *_ in SETTINGS if "img_s" in results.get(f"{kind}/{name}", {})}
    results["load_average"] = list(os.getloadavg())
    print(json.dumps(results))


if __name__ == "__main__":
    main()
