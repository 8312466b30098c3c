"""The ``runtime`` section as a Runtime: device, bf16 only where it is fast, memory format."""

from __future__ import annotations

import pytest
import torch

import hintpose.runtime as runtime
from hintpose.config import RuntimeParams
from hintpose.errors import ConfigError
from hintpose.runtime import Runtime, current_dist, from_params, resolve_device


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="runtime.device is 'cuda' but no CUDA device"):
            resolve_device("cuda")


def test_bf16_only_where_the_device_has_fast_kernels(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "bf16_supported", lambda device: False)  # an AVX2-only CPU
    rt = Runtime.create(cpu, bf16=True, channels_last=True)
    assert not rt.bf16 and rt.channels_last
    out = capsys.readouterr().out
    assert "note: runtime.bf16 has no effect" in out
    assert "runtime: cpu" in out and ", fp32, channels_last, " in out  # the path, printed once
    assert not Runtime.create(cpu, bf16=True, channels_last=False, announce=False).bf16
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(runtime, "bf16_supported", lambda device: True)  # AVX-512 BF16
    fast = Runtime.create(cpu, bf16=True, channels_last=False)
    kind = torch.backends.cpu.get_cpu_capability()
    assert fast.bf16 and capsys.readouterr().out == (
        f"runtime: cpu {kind}, bf16 autocast, contiguous, 1 process x "
        f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}\n")
    assert not Runtime.create(cpu, bf16=False, channels_last=False).bf16  # off stays off


def test_autocast_and_memory_format() -> None:
    x = torch.randn(2, 3, 8, 8)
    plain = Runtime(torch.device("cpu"))
    assert plain.memory_format == torch.contiguous_format
    assert plain.images(x).is_contiguous()
    with plain.autocast():
        assert (x @ x.transpose(-1, -2)).dtype == torch.float32
    last = Runtime(torch.device("cpu"), bf16=True, channels_last=True)
    assert last.images(x).is_contiguous(memory_format=torch.channels_last)
    with last.autocast():
        assert torch.nn.functional.linear(x, torch.randn(8, 8)).dtype == torch.bfloat16


def test_from_params_sets_threads_and_device() -> None:
    threads = torch.get_num_threads()
    try:
        rt = from_params(RuntimeParams(device="cpu", bf16=False, channels_last=True, threads=1),
                         announce=False)
        assert rt == Runtime(torch.device("cpu"), False, True)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_a_single_process_is_rank_zero_of_one() -> None:
    info = current_dist()
    assert (info.rank, info.world_size, info.is_main, info.distributed) == (0, 1, True, False)
