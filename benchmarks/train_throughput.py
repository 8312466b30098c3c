"""Training throughput (img/s) of the pose models on random inputs: forward + backward + Adam step.

Measures the official HRNet-W32 at 256x192 and the default network of params.yaml (pose.width,
modules, blocks and the pose.data input size; also with the official layout), each in the
project's training path (channels_last, plus bf16 autocast where the CPU has fast bf16
kernels, as ``hintpose.runtime`` decides) and in plain fp32 with contiguous tensors, plus
the cost of the recurrent variant (pose.hops outputs) relative to the baseline at the
default size. The last line printed is one JSON object with every figure.

    PYTHONPATH=. python benchmarks/train_throughput.py [--params params.yaml] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from hintpose.config import Params, load_params
from hintpose.models.hintpose import HintPose
from hintpose.models.hrnet import OFFICIAL_BLOCKS, OFFICIAL_MODULES
from hintpose.runtime import Runtime, bf16_supported
from hintpose.topdown.training import forward_losses


def make_step(width: int, size: tuple[int, int], bf16: bool, channels_last: bool,
              hops: int = 1, batch: int = 16, cue: str = "none",
              layout: tuple[tuple[int, ...], int] = (OFFICIAL_MODULES, OFFICIAL_BLOCKS),
              compile: bool = False) -> tuple[Callable[[], None], int]:
    """One training step (the engine's: forward, pose loss, backward, Adam) of a HintPose
    configuration on a fixed random batch, and the batch size; ``size`` is (W, H),
    ``layout`` the HRNet (modules per stage, blocks per branch), ``compile`` torch.compile."""
    torch.manual_seed(0)
    recurrent = hops > 1
    net = HintPose(width, cue, recurrent, hops=hops if recurrent else 1,
                   modules=layout[0], blocks=layout[1])
    rt = Runtime(torch.device("cpu"), bf16=bf16, channels_last=channels_last)
    net.to(memory_format=rt.memory_format).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    model = torch.compile(net) if compile else net
    w, h = size
    joints = 17
    data = {"image": torch.randn(batch, 3, h, w),
            "target": torch.rand(batch, joints, h // 4, w // 4) * 0.1,
            "target_weight": torch.ones(batch, joints, 1)}
    if cue != "none":
        data["cue"] = torch.rand(batch, 1, h, w)

    def step() -> None:
        loss = torch.stack(forward_losses(model, data, rt)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, batch


def measure(width: int, size: tuple[int, int], bf16: bool, channels_last: bool, hops: int = 1,
            batch: int = 16, warmup: int = 2, iters: int = 5, cue: str = "none",
            layout: tuple[tuple[int, ...], int] = (OFFICIAL_MODULES, OFFICIAL_BLOCKS)) -> float:
    """Images per second of training steps of one HintPose configuration (:func:`make_step`)."""
    step, batch = make_step(width, size, bf16, channels_last, hops, batch, cue, layout)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    # The median step: robust to a step slowed by another process on a small shared machine.
    return batch / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--force-bf16", action="store_true",
                    help="also time bf16 autocast where it has no fast kernels (AVX2 CPUs)")
    args = ap.parse_args()
    if args.params.is_file():
        params = load_params(args.params)
    else:
        print(f"note: {args.params} not found, using the default settings")
        params = Params()
    pose, runtime = params.pose, params.runtime
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    elif runtime.threads > 0:
        torch.set_num_threads(runtime.threads)
    default = (pose.data.input_width, pose.data.input_height)
    run = {"batch": args.batch, "warmup": args.warmup, "iters": args.iters}
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"load average {load:.2f}")
    if load > 0.5 * (os.cpu_count() or 1):
        print("warning: the machine is busy; with two threads per step, other processes slow "
              "training far more than their share")

    # The project's path: what hintpose.runtime does with runtime.bf16/channels_last.
    cpu = torch.device("cpu")
    bf16 = runtime.bf16 and bf16_supported(cpu)
    cl = runtime.channels_last
    if runtime.bf16 and not bf16:
        print("note: no fast bf16 kernels on this CPU (oneDNN needs AVX-512): the training "
              "path runs fp32")
    results: dict[str, float | int | str | bool] = {
        "threads": torch.get_num_threads(), **run, "bf16": bf16, "channels_last": cl}
    official = (OFFICIAL_MODULES, OFFICIAL_BLOCKS)
    layout = (pose.modules, pose.blocks)
    cases = [
        ("train_img_s", 32, (192, 256), bf16, cl, 1, official),
        ("fp32_plain_img_s", 32, (192, 256), False, False, 1, official),
        ("default_img_s", pose.width, default, bf16, cl, 1, layout),
        ("default_fp32_plain_img_s", pose.width, default, False, False, 1, layout),
        ("default_rr_img_s", pose.width, default, bf16, cl, pose.hops, layout),
        ("default_official_layout_img_s", pose.width, default, bf16, cl, 1, official),
    ]
    if args.force_bf16 and not bf16:
        cases.append(("default_forced_bf16_img_s", pose.width, default, True, True, 1, layout))
    for key, width, size, use_bf16, use_cl, hops, arch in cases:
        value = measure(width, size, use_bf16, use_cl, hops, **run, layout=arch)
        results[key] = round(value, 2)
        path = ("bf16" if use_bf16 else "fp32") + ("+channels_last" if use_cl else " contiguous")
        print(f"W{width} {size[1]}x{size[0]} modules {list(arch[0])} blocks {arch[1]} hops {hops} "
              f"{path:>18}: {value:7.2f} img/s", flush=True)
    results["default_size"] = (f"W{pose.width} {default[1]}x{default[0]}, modules "
                               f"{list(pose.modules)}, blocks {pose.blocks}")
    results["rr_hops"] = pose.hops
    results["rr_cost_ratio"] = round(results["default_img_s"] / results["default_rr_img_s"], 3)
    results["speedup_w32"] = round(results["train_img_s"] / results["fp32_plain_img_s"], 3)
    results["load_start"] = round(load, 2)
    results["load_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
