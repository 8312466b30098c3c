"""The one training loop (hintpose.engine) on a tiny task: the loss goes down, the lr follows
the schedule, a killed run resumes to the bit-identical weights and log of an uninterrupted one,
checkpoints of other settings are ignored and unreadable ones are clear errors."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from hintpose.engine import (
    CHECKPOINT,
    Schedule,
    Task,
    finish_training,
    fit,
    format_row,
    load_checkpoint,
    mean_over,
)
from hintpose.errors import DataError
from hintpose.models.folder import MODEL_CONFIG, MODEL_WEIGHTS, load_network
from hintpose.runtime import SINGLE_PROCESS
from hintpose.trainlog import read_log

CPU = torch.device("cpu")
SCHEDULE = Schedule(epochs=5, lr=1e-2, lr_steps=(0.4, 0.8), lr_factor=0.1)
FINGERPRINT = {"net": "tiny", "lr": 1e-2, "epochs": 5}
#: Columns of an epoch row: engine bookkeeping around the task's training and validation.
COLUMNS = ["epoch", "lr", "train_loss", "val_loss", "seconds", "img_s"]


class Killed(Exception):
    """Stands for the process being killed after an epoch's checkpoint."""


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))


class Regression(Task):
    """y = x . w + noise; 64 training samples in a seeded order per epoch, batches of 8."""

    name = "tiny"

    def __init__(self, samples: int = 64, batch_size: int = 8) -> None:
        gen = torch.Generator().manual_seed(123)
        w = torch.randn(4, 1, generator=gen)
        self.x = torch.randn(samples, 4, generator=gen)
        self.y = self.x @ w + 0.05 * torch.randn(samples, 1, generator=gen)
        self.val_x = torch.randn(32, 4, generator=gen)
        self.val_y = self.val_x @ w
        self.batch_size = batch_size
        self.epochs_drawn: list[int] = []

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.epochs_drawn.append(epoch)
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(1000 + epoch))
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.x[idx], self.y[idx]

    def losses(self, net: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch
        loss = nn.functional.mse_loss(net(x), y)
        return loss, {"train_loss": loss}

    @torch.no_grad()
    def validate(self, net: nn.Module) -> dict[str, float]:
        net.eval()
        return {"val_loss": float(nn.functional.mse_loss(net(self.val_x), self.val_y))}


def states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def same_rows(a: list[dict[str, float]], b: list[dict[str, float]]) -> bool:
    """Equal logs, bit for bit, apart from the wall-clock columns."""
    keep = [c for c in COLUMNS if c not in ("seconds", "img_s")]
    return [[r[c] for c in keep] for r in a] == [[r[c] for c in keep] for r in b]


# --------------------------------------------------------------------------- schedule


def test_milestones_are_fractions_of_the_schedule() -> None:
    assert Schedule(210, 1e-3, (170 / 210, 200 / 210)).milestones() == [170, 200]  # HRNet
    assert Schedule(4, 1e-3, (0.5, 0.75)).milestones() == [2, 3]
    assert Schedule(4, 1e-3, (0.1,)).milestones() == [1]  # never at epoch 0
    assert Schedule(3, 1e-3).milestones() == []


def test_lr_steps_at_the_milestones() -> None:
    fitted = fit(tiny_net(), Regression(), SCHEDULE, CPU, None, FINGERPRINT, progress=False)
    assert [r["lr"] for r in fitted.log] == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3, 1e-4],
                                                          rel=1e-9)


def test_added_blocks_get_their_own_lr() -> None:
    """``added_lr_mult`` scales the lr of the parameters a network lists as added (Adam's
    first step moves each weight by about its lr); the others keep the schedule's lr."""

    class Added(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base, self.extra = tiny_net(), nn.Linear(1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.extra(self.base(x))

        def added_parameters(self) -> list[nn.Parameter]:
            return list(self.extra.parameters())

    for mult in (1.0, 10.0):
        net = Added()
        before = {k: v.clone() for k, v in net.state_dict().items()}
        task = Regression(samples=8)
        fit(net, task, Schedule(1, 1e-3, added_lr_mult=mult), CPU, None, FINGERPRINT,
            progress=False)
        step = {k: float((v - before[k]).abs().max()) for k, v in net.state_dict().items()}
        assert step["base.0.weight"] == pytest.approx(1e-3, rel=0.05)
        assert step["extra.weight"] == pytest.approx(1e-3 * mult, rel=0.05)


# --------------------------------------------------------------------------- the loop


def test_loss_decreases_and_every_epoch_is_one_row(capsys: pytest.CaptureFixture[str]) -> None:
    net, task = tiny_net(), Regression()
    with torch.no_grad():
        before = float(nn.functional.mse_loss(net(task.val_x), task.val_y))
    fitted = fit(net, task, SCHEDULE, CPU, None, FINGERPRINT, progress=False)
    assert fitted.resumed_epochs == 0 and task.epochs_drawn == [0, 1, 2, 3, 4]
    assert [list(r) for r in fitted.log] == [COLUMNS] * 5
    assert [r["epoch"] for r in fitted.log] == [1, 2, 3, 4, 5]
    losses = [r["train_loss"] for r in fitted.log]
    assert losses[-1] < 0.3 * losses[0], losses
    assert fitted.log[-1]["val_loss"] < 0.3 * before
    assert all(r["seconds"] > 0 and r["img_s"] > 0 for r in fitted.log)
    assert not net.training  # returned in eval mode
    out = capsys.readouterr().out.splitlines()  # one line per epoch
    assert len(out) == 5 and out[0].startswith("tiny epoch 1/5  lr 1.00e-02  train_loss ")


def test_logged_means_are_weighted_by_samples() -> None:
    """An epoch's figure is the mean over samples, not over batches: batches of 3 and 1
    samples logging 0 and 1 give 0.25."""

    class Uneven(Regression):
        def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            yield self.x[:3], self.y[:3]
            yield self.x[3:4], self.y[3:4]

        def losses(self, net: nn.Module, batch: Any) -> tuple[torch.Tensor,
                                                               dict[str, torch.Tensor]]:
            loss = nn.functional.mse_loss(net(batch[0]), batch[1])
            return loss, {"train_loss": torch.tensor(float(len(batch[0]) == 1))}

    fitted = fit(tiny_net(), Uneven(), Schedule(1, 1e-3), CPU, None, {}, progress=False)
    assert fitted.log[0]["train_loss"] == 0.25


def test_mean_over_one_process() -> None:
    assert mean_over([(1.0, 3), (5.0, 1)], SINGLE_PROCESS, CPU) == 2.0
    assert math.isnan(mean_over([], SINGLE_PROCESS, CPU))


def test_format_row() -> None:
    row = {"epoch": 2, "lr": 1e-3, "train_loss": 0.125, "val_loss": 0.5, "seconds": 12.4,
           "img_s": 51.26}
    assert format_row("pose", row, 10) == ("pose epoch 2/10  lr 1.00e-03  train_loss 1.2500e-01"
                                           "  val_loss 5.0000e-01  51.3 img/s  12 s")


# --------------------------------------------------------------------------- resume


def test_killed_run_resumes_to_the_uninterrupted_weights_and_log(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    full_net = tiny_net()
    full = fit(full_net, Regression(), SCHEDULE, CPU, tmp_path / "full" / CHECKPOINT,
               FINGERPRINT, progress=False)

    def kill_after_third(epoch: int, row: dict[str, float]) -> None:
        if epoch == 2:  # epochs 1-3 done; the lr has stepped once, Adam has moments
            raise Killed

    ckpt = tmp_path / "cut" / CHECKPOINT
    with pytest.raises(Killed):
        fit(tiny_net(), Regression(), SCHEDULE, CPU, ckpt, FINGERPRINT, progress=False,
            on_epoch_end=kill_after_third)
    assert sorted(p.name for p in ckpt.parent.iterdir()) == [CHECKPOINT]
    stored = torch.load(ckpt, weights_only=True)
    assert stored["epoch"] == 3 and stored["fingerprint"] == FINGERPRINT
    assert len(stored["log"]) == 3
    capsys.readouterr()

    task = Regression()
    resumed_net = tiny_net(seed=99)  # other initial weights: the checkpoint's replace them
    resumed = fit(resumed_net, task, SCHEDULE, CPU, ckpt, FINGERPRINT, progress=False)
    assert f"resuming from {ckpt} after epoch 3/5" in capsys.readouterr().out
    assert resumed.resumed_epochs == 3 and task.epochs_drawn == [3, 4]
    assert states_equal(full_net, resumed_net)
    assert len(resumed.log) == 5 and same_rows(full.log, resumed.log)
    # the same run found finished is not trained further
    again_net, again_task = tiny_net(seed=7), Regression()
    again = fit(again_net, again_task, SCHEDULE, CPU, ckpt, FINGERPRINT, progress=False)
    assert again.resumed_epochs == 5 and again_task.epochs_drawn == []
    assert states_equal(full_net, again_net) and same_rows(full.log, again.log)


def test_checkpoint_of_other_settings_is_ignored_with_a_note(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / CHECKPOINT
    fit(tiny_net(), Regression(), Schedule(2, 1e-2), CPU, ckpt, FINGERPRINT, progress=False)
    capsys.readouterr()
    other = {**FINGERPRINT, "lr": 5e-3, "extra": 1}
    task = Regression()
    result = fit(tiny_net(), task, Schedule(2, 5e-3), CPU, ckpt, other, progress=False)
    out = capsys.readouterr().out
    assert f"note: {ckpt} was made with other settings (extra, lr); training from scratch" in out
    assert "resuming" not in out
    assert result.resumed_epochs == 0 and task.epochs_drawn == [0, 1]
    assert torch.load(ckpt, weights_only=True)["fingerprint"] == other  # replaced
    # load_checkpoint itself: None for other settings (quietly when not verbose)
    assert load_checkpoint(ckpt, FINGERPRINT, verbose=False) is None
    assert capsys.readouterr().out == ""
    assert load_checkpoint(ckpt, other)["epoch"] == 2
    assert load_checkpoint(tmp_path / "none.pt", other) is None


def test_unreadable_checkpoint_is_a_data_error(tmp_path: Path) -> None:
    ckpt = tmp_path / CHECKPOINT
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=f"{CHECKPOINT}: cannot read the training checkpoint"):
        fit(tiny_net(), Regression(), SCHEDULE, CPU, ckpt, FINGERPRINT, progress=False)
    torch.save({"model": {}}, ckpt)  # a torch file, but no checkpoint of the engine
    with pytest.raises(DataError, match="delete it to start training afresh"):
        load_checkpoint(ckpt, FINGERPRINT)


def test_leftovers_of_an_interrupted_save_are_removed(tmp_path: Path) -> None:
    ckpt = tmp_path / CHECKPOINT
    stale = tmp_path / f".{CHECKPOINT}.tmp4242"
    stale.write_bytes(b"half a checkpoint")
    assert load_checkpoint(ckpt, FINGERPRINT) is None
    assert not stale.exists()


# --------------------------------------------------------------------------- a stage's end


def test_finish_training_leaves_model_log_and_no_checkpoint(tmp_path: Path) -> None:
    net = tiny_net()
    ckpt = tmp_path / "ckpt" / CHECKPOINT
    fitted = fit(net, Regression(), SCHEDULE, CPU, ckpt, FINGERPRINT, progress=False)
    assert ckpt.is_file()
    config = {"hidden": 16, "name": "tiny"}
    finish_training(tmp_path / "model", net, config, fitted.log, tmp_path / "log", ckpt)
    assert not ckpt.exists()
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [MODEL_CONFIG,
                                                                      MODEL_WEIGHTS]
    loaded, cfg = load_network(tmp_path / "model", lambda c: tiny_net(seed=5), "tiny net",
                               "train_tiny")
    assert cfg == config and states_equal(loaded, net) and not loaded.training
    log = read_log(tmp_path / "log")
    assert log["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert log["train_loss"].tolist() == pytest.approx([r["train_loss"] for r in fitted.log],
                                                       rel=1e-12)
