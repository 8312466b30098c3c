"""How networks run here: the device, bf16 autocast and channels_last, threads, DDP groups.

Everything in ``params.yaml``'s ``runtime`` section ends up in a :class:`Runtime` (or in
:func:`distributed_session` for the process group); training and inference read the same one.
This module imports no model.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import torch
import torch.distributed as dist

from hintpose.config import RuntimeParams
from hintpose.errors import ConfigError

DEVICE_KEY = "runtime.device"


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``runtime.device`` -> a torch device: ``auto`` is CUDA when present, else the CPU; each
    process of a multi-GPU run takes the GPU of its local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{DEVICE_KEY} is 'cuda' but no CUDA device is available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast speeds networks up on ``device``. On a CPU, PyTorch runs bf16
    convolutions through oneDNN only when it supports bf16 there (AVX-512 and up); on an
    AVX2-only CPU they fall back to a slow reference kernel, several times slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def set_threads(threads: int) -> None:
    """``runtime.threads`` > 0 sets torch's intra-op threads; 0 leaves them (a process started
    by hintpose.launch already has its share through OMP_NUM_THREADS)."""
    if threads > 0:
        torch.set_num_threads(threads)


def worker_init(_: int = 0) -> None:
    """Data loader workers: one OpenCV and one torch thread each (the cores are the main
    process's)."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


@dataclass(frozen=True)
class Runtime:
    """Where and how batches run: device, bf16 autocast (only where it is fast) and memory
    format."""

    device: torch.device
    bf16: bool = False
    channels_last: bool = False

    @classmethod
    def create(cls, device: torch.device, bf16: bool, channels_last: bool,
               announce: bool = True) -> Runtime:
        """bf16 only where the device has fast bf16 kernels; ``announce`` prints the path
        chosen (once per stage: its main process) and a note when ``runtime.bf16`` is on but
        cannot pay here."""
        fast = bf16 and bf16_supported(device)
        if bf16 and not fast and announce:
            print(f"note: runtime.bf16 has no effect: no fast bf16 kernels on {device} (a CPU "
                  "needs AVX-512); running in fp32", flush=True)
        rt = cls(device, fast, channels_last)
        if announce:
            print(f"runtime: {rt.describe()}", flush=True)
        return rt

    def describe(self) -> str:
        """The execution path in one line: device and CPU kind, numerics, memory format,
        processes and threads (docs/sizing.md "Execution paths per CPU kind")."""
        kind = (f"cpu {torch.backends.cpu.get_cpu_capability()}" if self.device.type == "cpu"
                else str(self.device))
        procs = int(os.environ.get("WORLD_SIZE", "1"))
        return (f"{kind}, {'bf16 autocast' if self.bf16 else 'fp32'}, "
                f"{'channels_last' if self.channels_last else 'contiguous'}, "
                f"{procs} process{'es' if procs > 1 else ''} x {torch.get_num_threads()} "
                f"thread{'s' if torch.get_num_threads() > 1 else ''}")

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def images(self, tensor: torch.Tensor) -> torch.Tensor:
        """An input batch (N, C, H, W) on the device in the memory format."""
        return tensor.to(self.device, non_blocking=True, memory_format=self.memory_format)


def from_params(params: RuntimeParams, local_rank: int = 0, announce: bool = True) -> Runtime:
    """The ``runtime`` section as this process's Runtime (threads set, device of its rank)."""
    set_threads(params.threads)
    return Runtime.create(resolve_device(params.device, local_rank), params.bf16,
                          params.channels_last, announce)


# --------------------------------------------------------------------------- process groups


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


#: A run of one process (no process group).
SINGLE_PROCESS = DistInfo()


def current_dist() -> DistInfo:
    """Rank and world size of the initialised process group (a single process otherwise)."""
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return DistInfo(dist.get_rank(), dist.get_world_size(), local)
    return DistInfo()


@contextlib.contextmanager
def distributed_session(device: str = "auto") -> Iterator[DistInfo]:
    """Start a process group when launched by torchrun or hintpose.launch with WORLD_SIZE > 1
    (NCCL on CUDA, gloo on the CPU) and end it afterwards (after a barrier when all went
    well)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        yield current_dist()
        return
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    ok = False
    try:
        yield current_dist()
        ok = True
    finally:
        if ok:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(values: Sequence[float], info: DistInfo, device: torch.device) -> list[float]:
    """``values`` summed over the ranks of the group (float64); unchanged in one process."""
    if not info.distributed:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()
