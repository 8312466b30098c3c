"""Training: loss goes down, every hop is trained, kill-and-resume is exact, DDP, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hintpose.config import (
    ModelParams,
    PoseDataParams,
    PoseParams,
    PosePretrainParams,
    PoseTrainParams,
)
from hintpose.data.coco import CocoPersons, load_split, write_manifest
from hintpose.engine import CHECKPOINT, TrainResult
from hintpose.errors import ConfigError, DataError
from hintpose.models.folder import save_network
from hintpose.models.hintpose import HintPose
from hintpose.models.hrnet import HRNet
from hintpose.runtime import Runtime
from hintpose.topdown.inference import load_pose_model
from hintpose.topdown.pretraining import branch_schedule, pretrain_backbone
from hintpose.topdown.samples import TopDownDataset, collate, training_instances
from hintpose.topdown.spec import ModelSpec
from hintpose.topdown.training import (
    PoseData,
    forward_losses,
    select_training_instances,
    start_model,
    train_pose_model,
    validation_instances,
)
from hintpose.topdown.weights import load_branch_init, load_pretrained_backbone, save_backbone
from hintpose.trainlog import read_log, write_log

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
         "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
         "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]
# A standing person in a unit box (x, y in 0..1).
SHAPE = np.array([(.5, .08), (.55, .05), (.45, .05), (.6, .07), (.4, .07), (.7, .25), (.3, .25),
                  (.8, .4), (.2, .4), (.85, .55), (.15, .55), (.62, .58), (.38, .58),
                  (.64, .78), (.36, .78), (.65, .97), (.35, .97)])


def _split(folder: Path, split: str, images: int, rng: np.random.Generator) -> str:
    """Small images with two drawn persons each; returns the annotation file name."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    recs, anns = [], []
    for i in range(images):
        image = np.full((96, 128, 3), 60, np.uint8)
        iid = len(recs) + 1 + (1000 if split == "val" else 0)
        for p in range(2):
            w, h = rng.uniform(24, 40), rng.uniform(56, 80)
            x, y = rng.uniform(2 + 60 * p, 60 * p + 60 - w), rng.uniform(2, 94 - h)
            kpts = np.zeros((17, 3))
            kpts[:, :2] = SHAPE * (w, h) + (x, y) + rng.normal(0, 1.5, (17, 2))
            kpts[:, 2] = np.where(rng.random(17) < 0.85, 2, 0)
            for j, (u, v, vis) in enumerate(kpts):
                if vis:
                    color = (40 + 12 * j, 255 - 12 * j, 120 + 60 * p)
                    cv2.circle(image, (int(u), int(v)), 2, color, -1)
            kpts[kpts[:, 2] == 0] = 0
            anns.append({"id": 10 * iid + p, "image_id": iid, "category_id": 1,
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0,
                         "keypoints": kpts.ravel().round(2).tolist(),
                         "num_keypoints": int((kpts[:, 2] > 0).sum())})
        name = f"{split}_{i}.png"
        cv2.imwrite(str(folder / "images" / name), image)
        recs.append({"id": iid, "file_name": name, "width": 128, "height": 96})
    data = {"images": recs, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": NAMES, "skeleton": []}]}
    ann = f"annotations/person_keypoints_{split}.json"
    (folder / "annotations").mkdir(exist_ok=True)
    (folder / ann).write_text(json.dumps(data))
    return ann


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny dataset folder in the layout of the prepare stage (12 + 4 images, 2 persons)."""
    folder = tmp_path_factory.mktemp("dataset")
    rng = np.random.default_rng(0)
    splits = {s: (_split(folder, s, n, rng), "images") for s, n in (("train", 12), ("val", 4))}
    write_manifest(folder, splits, "synthetic")
    return folder


@pytest.fixture(scope="module")
def splits(dataset: Path) -> tuple[CocoPersons, CocoPersons]:
    return load_split(dataset, "train"), load_split(dataset, "val")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (and train_pose_model sets the count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: Plain fp32 on the CPU (bf16 pays off only for wide layers).
CPU = Runtime(torch.device("cpu"), bf16=False, channels_last=False)


def tiny_pose(**train: object) -> PoseParams:
    """Tiny settings (lr and its schedule given here, not taken from the defaults)."""
    settings = {"epochs": 2, "batch_size": 8, "max_samples": 16, "val_samples": 6,
                "workers": 0, "lr": 1e-3, "lr_steps": (0.81, 0.95), "lr_factor": 0.1, **train}
    return PoseParams(width=4, hops=2,
                      data=PoseDataParams(input_width=48, input_height=64),
                      train=PoseTrainParams(**settings))  # type: ignore[arg-type]


def fit_model(train: CocoPersons, val: CocoPersons | None, pose: PoseParams,
              model: ModelParams, rt: Runtime, checkpoint: Path | None = None, *,
              init: Path | None = None, name: str = "", **kwargs: object) -> TrainResult:
    """One model of ``models`` trained as the train stage does (``pose.train`` schedule)."""
    spec = ModelSpec.from_params(pose, model, train.category["keypoints"], name)
    if init is None and pose.pretrained:
        init = Path(pose.pretrained)
    return train_pose_model(start_model(spec, init), PoseData(train, val, pose.data),
                            pose.train, rt, checkpoint, **kwargs)  # type: ignore[arg-type]


def spec_of(config: dict, **changes: object) -> ModelSpec:
    """The spec of a ``model.json`` record, with ``changes``."""
    return replace(ModelSpec.from_json(config, "model.json"), **changes)  # type: ignore[arg-type]


def states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class Killed(Exception):
    """Stands for the process being killed after an epoch's checkpoint."""


# --------------------------------------------------------------------------- steps and loss


def test_training_steps_lower_the_loss_on_a_fixed_batch(splits) -> None:
    train, _ = splits
    pose = tiny_pose()
    ds = TopDownDataset(train, training_instances(train)[:8], pose.data, train=True, seed=0)
    batch = collate([ds[i] for i in range(8)])
    torch.manual_seed(0)
    net = HintPose(4, "none", False, hops=1, num_joints=17)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(16):
        hops = forward_losses(net, batch, CPU)
        assert len(hops) == 1
        opt.zero_grad()
        hops[0].backward()
        opt.step()
        losses.append(float(hops[0].detach()))
    assert np.mean(losses[-3:]) < 0.9 * losses[0], losses


LOG_COLUMNS = ["epoch", "lr", "train_loss", "train_loss_hop1", "train_loss_hop2", "val_loss",
               "val_AP", "val_AP_hop1", "follow_rate", "oks_own", "oks_other", "seconds",
               "img_s"]


def test_recurrent_model_trains_and_logs_every_hop(splits, tmp_path: Path) -> None:
    train, val = splits
    pose = tiny_pose(epochs=1)
    # The project's fast path (bf16 autocast only where the CPU has fast bf16 kernels).
    rt = Runtime.create(torch.device("cpu"), bf16=True, channels_last=True, announce=False)
    result = fit_model(train, val, pose, ModelParams(cue="point", recurrent=True),
                              rt, None, progress=False)
    assert len(result.log) == 1 and result.resumed_epochs == 0
    row = result.log[0]
    assert list(row) == LOG_COLUMNS
    hops = [row[f"train_loss_hop{h}"] for h in (1, 2)]
    assert result.config["hops"] == 2 and all(v > 0 for v in hops)
    assert row["train_loss"] == pytest.approx(sum(hops))
    assert np.isfinite(row["val_loss"]) and row["lr"] == pytest.approx(1e-3)
    assert 0 <= row["val_AP"] <= 100  # the learning curve's GT-box AP of the val images
    assert 0 <= row["val_AP_hop1"] <= 100  # and that of the earlier hop
    assert 0 <= row["follow_rate"] <= 1  # the cue probe's learning curve
    assert row["epoch"] == 1 and row["seconds"] > 0 and row["img_s"] > 0
    write_log(tmp_path / "log", result.log)
    frame = read_log(tmp_path / "log")
    assert sorted(frame.columns) == sorted(LOG_COLUMNS)
    assert frame["epoch"].tolist() == [1]
    assert frame["train_loss_hop2"].tolist() == pytest.approx([row["train_loss_hop2"]])
    metrics = json.loads((tmp_path / "log" / "metrics.json").read_text())
    assert metrics["val_loss"] == pytest.approx(row["val_loss"]) and "epoch" not in metrics


def test_coarse_to_fine_targets_give_each_hop_its_own_sigma(splits) -> None:
    """hop_sigma_scales: a recurrent model's training targets gain a hop axis, hop 1 the
    widest Gaussian and the last hop the plain target; each hop's loss uses its own."""
    train, _ = splits
    pose = tiny_pose(epochs=1)
    data = replace(pose.data, hop_sigma_scales=(2.0, 1.0))
    inst = training_instances(train)[:4]
    plain = TopDownDataset(train, inst, pose.data, train=True, seed=0, hops=2)
    c2f = TopDownDataset(train, inst, data, train=True, seed=0, hops=2)
    target, weight = c2f[0]["target"], c2f[0]["target_weight"]
    assert target.shape == (2, *plain[0]["target"].shape)
    assert torch.equal(target[1], plain[0]["target"])
    assert torch.equal(weight, plain[0]["target_weight"])
    j = int(torch.argmax(weight[:, 0]))
    assert (target[0, j] > 0.5).sum() > (target[1, j] > 0.5).sum()  # wider at hop 1
    single = TopDownDataset(train, inst, data, train=True, seed=0, hops=1)
    assert single[0]["target"].shape == plain[0]["target"].shape  # a one-hop model: one target
    batch = collate([c2f[i] for i in range(4)])
    net = HintPose(4, "none", True, hops=2)
    losses = forward_losses(net, batch, CPU)
    assert len(losses) == 2 and all(torch.isfinite(v) for v in losses)
    with pytest.raises(ConfigError, match="hop_sigma_scales gives 3 factors; hops is 2"):
        replace(pose, data=replace(pose.data, hop_sigma_scales=(3.0, 2.0, 1.0)))


def test_lr_follows_the_step_schedule(splits) -> None:
    train, _ = splits
    pose = tiny_pose(epochs=4, lr_steps=(0.5, 0.75), max_samples=4, batch_size=4)
    result = fit_model(train, None, pose, ModelParams(), CPU, None, progress=False)
    assert [r["lr"] for r in result.log] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5])
    assert all(np.isnan(r["val_loss"]) for r in result.log)
    # One output: no per-hop columns.
    assert not any(k.startswith("train_loss_hop") for r in result.log for k in r)


# --------------------------------------------------------------------------- subsets and cues


def test_training_subset_and_validation_cues_are_deterministic(splits) -> None:
    train, val = splits
    a = select_training_instances(train, 5, seed=3)
    assert len(a) == 5
    assert [i.bbox for i in a] == [i.bbox for i in select_training_instances(train, 5, seed=3)]
    assert [i.bbox for i in a] != [i.bbox for i in select_training_instances(train, 5, seed=4)]
    assert len(select_training_instances(train, 0, seed=3)) == len(training_instances(train))
    cues = validation_instances(val, 3)
    assert len(cues) == 3 and len(validation_instances(val, 0)) == len(training_instances(val))
    assert [c.cue for c in cues] == [c.cue for c in validation_instances(val, 3)]
    for inst in cues:  # the cue sits exactly on one of the person's labeled joints
        labeled = inst.keypoints[inst.keypoints[:, 2] > 0, :2]
        assert np.abs(labeled - np.array(inst.cue)).sum(1).min() == 0


# --------------------------------------------------------------------------- resume


def test_kill_and_resume_gives_the_weights_of_an_uninterrupted_run(splits, tmp_path: Path,
                                                                   capsys) -> None:
    train, val = splits
    pose, model = tiny_pose(epochs=3, lr_steps=(0.5,)), ModelParams(recurrent=True, seed=5)
    full = fit_model(train, val, pose, model, CPU, tmp_path / "full" / CHECKPOINT,
                            progress=False)
    cut = tmp_path / "cut" / CHECKPOINT

    def kill_after_first(epoch: int, row: dict[str, float]) -> None:
        if epoch == 0:
            raise Killed

    with pytest.raises(Killed):
        fit_model(train, val, pose, model, CPU, cut, progress=False,
                         on_epoch_end=kill_after_first)
    assert sorted(p.name for p in (tmp_path / "cut").iterdir()) == [CHECKPOINT]
    resumed = fit_model(train, val, pose, model, CPU, cut, progress=False)
    assert "resuming" in capsys.readouterr().out
    assert full.resumed_epochs == 0
    assert resumed.resumed_epochs == 1 and len(resumed.log) == 3
    assert states_equal(full.model, resumed.model)
    for a, b in zip(full.log, resumed.log, strict=True):
        assert (a["epoch"], a["lr"], a["train_loss"], a["train_loss_hop2"], a["val_loss"]) == (
            b["epoch"], b["lr"], b["train_loss"], b["train_loss_hop2"], b["val_loss"])
    # A finished run found again is not trained further.
    again = fit_model(train, val, pose, model, CPU, cut, progress=False)
    assert again.resumed_epochs == 3 and states_equal(full.model, again.model)


def test_checkpoint_of_other_settings_is_not_resumed(splits, tmp_path: Path, capsys) -> None:
    train, _ = splits
    pose = tiny_pose(epochs=1, max_samples=4, batch_size=4)
    ckpt = tmp_path / CHECKPOINT
    fit_model(train, None, pose, ModelParams(), CPU, ckpt, progress=False)
    assert ckpt.is_file()
    wider = replace(pose, width=6)
    result = fit_model(train, None, wider, ModelParams(), CPU, ckpt, progress=False)
    out = capsys.readouterr().out
    assert "other settings (width)" in out and "training from scratch" in out
    assert result.resumed_epochs == 0 and result.config["width"] == 6
    (tmp_path / CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=CHECKPOINT):
        fit_model(train, None, pose, ModelParams(), CPU, ckpt, progress=False)


# --------------------------------------------------------------------------- errors


def test_missing_or_mismatched_pretrained_file_is_a_clear_error(splits, tmp_path: Path) -> None:
    train, _ = splits
    # pose.pretrained needs the official HRNet layout.
    pose = replace(tiny_pose(epochs=1), modules=(1, 4, 3), blocks=4,
                   pretrained=str(tmp_path / "nope.pth"))
    with pytest.raises(ConfigError, match="nope.pth: HRNet checkpoint not found"):
        fit_model(train, None, pose, ModelParams(), CPU, None, progress=False)
    wrong = tmp_path / "w8.pth"
    torch.save(HRNet(width=8).state_dict(), wrong)
    with pytest.raises(ConfigError, match="w8.pth"):
        fit_model(train, None, replace(pose, pretrained=str(wrong)), ModelParams(), CPU,
                         None, progress=False)


def test_stage_rejects_an_unknown_model_name(dataset: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("models:\n  base: {seed: 1}\n  rr: {recurrent: true}\n")
    proc = run_stage(["--model", "nope", "--params", str(params), "--dataset", str(dataset)],
                     tmp_path)
    assert proc.returncode == 1
    assert "unknown model 'nope'" in proc.stderr and "known: base, rr" in proc.stderr
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- stage, DDP


def run_stage(args: list[str], out: Path, nproc: int = 0) -> subprocess.CompletedProcess[str]:
    paths = ["--out", str(out / "model"), "--checkpoints", str(out / "ckpt"),
             "--log-dir", str(out / "logs")]
    script = str(ROOT / "stages" / "train.py")
    launcher = [sys.executable]
    if nproc:
        launcher += ["-m", "torch.distributed.run", "--standalone",
                     f"--nproc_per_node={nproc}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([*launcher, script, *args, *paths], capture_output=True, text=True,
                          env=env, timeout=300)


def ddp_params(path: Path, procs: int) -> Path:
    path.write_text(
        f"runtime: {{device: cpu, bf16: false, channels_last: false, procs: {procs}, threads: 0}}\n"
        "pose:\n  width: 4\n  hops: 2\n"
        "  data: {input_width: 48, input_height: 64, other_box_prob: 0.5}\n"
        "  train: {epochs: 2, batch_size: 4, max_samples: 16, val_samples: 5, workers: 1}\n"
        "models:\n  icrr: {cue: point, recurrent: true, seed: 2}\n")
    return path


@pytest.mark.parametrize("launcher", ["torchrun", "procs"])
def test_stage_with_two_ddp_processes(dataset: Path, tmp_path: Path, launcher: str) -> None:
    """Two DDP processes, started by torchrun or by the stage itself (runtime.procs)."""
    params = ddp_params(tmp_path / "params.yaml", 1 if launcher == "torchrun" else 2)
    proc = run_stage(["--model", "icrr", "--params", str(params), "--dataset", str(dataset)],
                     tmp_path, nproc=2 if launcher == "torchrun" else 0)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Only rank 0 logs and writes: one line per epoch.
    assert proc.stdout.count("epoch 1/2") == 1 and proc.stdout.count("epoch 2/2") == 1
    # Rank 0 checkpointed every epoch and removed the checkpoint once the model was written;
    # no rank left a file of its own behind.
    assert (tmp_path / "ckpt").is_dir() and not any((tmp_path / "ckpt").iterdir())
    assert "resuming" not in proc.stdout
    log = read_log(tmp_path / "logs")
    assert log["epoch"].tolist() == [1, 2] and sorted(log.columns) == sorted(LOG_COLUMNS)
    assert np.isfinite(log["val_loss"]).all() and (log["train_loss"] > 0).all()
    assert log["val_AP"].between(0, 100).all()  # rank 0 scored, both ranks predicted
    metrics = json.loads((tmp_path / "logs" / "metrics.json").read_text())
    assert metrics["val_loss"] == pytest.approx(log["val_loss"].iloc[-1])
    net, spec = load_pose_model(tmp_path / "model")
    assert spec.name == "icrr" and list(spec.keypoint_names) == NAMES
    assert (spec.hops, spec.cue, spec.input_height) == (2, "point", 64)
    cue = torch.zeros(1, 1, 64, 48)
    assert len(net(torch.zeros(1, 3, 64, 48), cue)) == 2


def test_a_failing_ddp_process_is_one_clear_error(dataset: Path, tmp_path: Path) -> None:
    """Both processes fail on the corrupt --init file: the first error stops the other
    process, and the user sees one line naming the file, not a traceback per process."""
    params = ddp_params(tmp_path / "params.yaml", 2)
    init = tmp_path / "hrnet.pt"
    init.write_bytes(b"not a checkpoint")
    proc = run_stage(["--model", "icrr", "--params", str(params), "--dataset", str(dataset),
                      "--init", str(init)], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.count("error:") == 1 and "hrnet.pt" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "model").exists()


def test_saved_model_round_trips(tmp_path: Path, splits) -> None:
    train, _ = splits
    pose = tiny_pose(epochs=1, max_samples=4, batch_size=4)
    result = fit_model(train, None, pose, ModelParams(cue="point"), CPU, None,
                              progress=False)
    save_network(tmp_path, result.model, result.config)
    net, spec = load_pose_model(tmp_path)
    assert spec.to_json() == json.loads(json.dumps(result.config))
    assert states_equal(net, result.model.cpu())


# --------------------------------------------------------------------------- pretraining


def test_pretrained_hrnet_is_every_models_start(splits, tmp_path: Path) -> None:
    """The pretrain stage's HRNet, saved with official names, is where a cue + recurrent model
    starts: before any step its last hop equals that HRNet's output (zero-initialised
    additions), and a resume checkpoint made from other initial weights is not reused."""
    train, val = splits
    pose = tiny_pose(epochs=1)
    pose = replace(pose, pretrain=PosePretrainParams(**{**asdict(pose.train), "seed": 5,
                                                        "cue_epochs": 0}))
    pre, branches = pretrain_backbone(PoseData(train, val, pose.data), pose, CPU, None,
                                      progress=False)
    assert len(pre.log) == 1 and pre.config["cue"] == "none" and branches == {}
    path = tmp_path / "hrnet.pt"
    save_backbone(path, pre.model)

    net = spec_of(pre.config, cue="point", recurrent=True, hops=2).build()
    load_pretrained_backbone(net, path)
    image, cue = torch.randn(2, 3, 64, 48), torch.rand(2, 1, 64, 48)
    with torch.no_grad():
        assert torch.allclose(net.eval()(image, cue)[-1], pre.model.eval()(image)[0], atol=1e-6)

    def kill(*_: object) -> None:
        raise Killed

    model = ModelParams(cue="point", recurrent=True, seed=1)
    ckpt = tmp_path / "ckpt" / CHECKPOINT
    with pytest.raises(Killed):
        fit_model(train, None, pose, model, CPU, ckpt, progress=False, init=path,
                         on_epoch_end=kill)
    assert ckpt.is_file()
    other = tmp_path / "other.pt"
    save_backbone(other, spec_of(pre.config).build())
    again = fit_model(train, None, pose, model, CPU, ckpt, progress=False, init=other)
    assert again.resumed_epochs == 0  # other initial weights: trained afresh
    with pytest.raises(ConfigError, match="nope.pt: HRNet checkpoint not found"):
        fit_model(train, None, pose, model, CPU, None, progress=False,
                  init=tmp_path / "nope.pt")


def test_cue_branch_continues_the_pretraining(splits, tmp_path: Path) -> None:
    """With cue_epochs 2 the pretrained HRNet trains two more epochs twice, on one schedule:
    alone (its log continues the pretraining's) and as a cue model on paired cues (the cue
    probe in its log). Cue models start from the cue branch (recurrent blocks still zero: the
    last hop equals the branch's output), and a file of other weights is a clear error."""
    train, val = splits
    pose = tiny_pose()
    pose = replace(pose, pretrain=PosePretrainParams(**{**asdict(pose.train), "epochs": 1,
                                                        "cue_epochs": 2, "probe_pairs": 4,
                                                        "val_images": 0, "paired_cues": True,
                                                        "branches": ("cue", "recurrent")}))
    schedule = branch_schedule(pose.pretrain)
    assert (schedule.epochs, schedule.lr, schedule.lr_steps) == (2, pytest.approx(1e-3), (0.5,))
    assert schedule.paired_cues
    ckpt = tmp_path / "ckpt" / CHECKPOINT
    pre, branches = pretrain_backbone(PoseData(train, val, pose.data), pose, CPU, ckpt,
                                      progress=False)
    assert set(branches) == {"cue", "recurrent"}
    branch, rec = branches["cue"], branches["recurrent"]
    assert branch.config["cue"] == "point" and not branch.config["recurrent"]
    assert rec.config["cue"] == "none" and rec.config["recurrent"]
    assert "train_loss_hop2" in rec.log[0] and len(rec.log) == 2
    assert pre.config["cue"] == "none" and [r["epoch"] for r in pre.log] == [1, 2, 3]
    assert [r["lr"] for r in branch.log] == pytest.approx([1e-3, 1e-4])
    assert [r["lr"] for r in pre.log[1:]] == pytest.approx([1e-3, 1e-4])  # the same schedule
    assert all(0 <= r["follow_rate"] <= 1 and "oks_own" in r for r in branch.log)
    assert (tmp_path / "ckpt" / "pretrained.pt").is_file()  # the branches' common start
    cue_file = tmp_path / "cue.pt"
    torch.save(branch.model.state_dict(), cue_file)

    net = spec_of(branch.config, recurrent=True, hops=2).build()
    load_branch_init(net, cue_file)
    image, cue = torch.randn(2, 3, 64, 48), torch.rand(2, 1, 64, 48)
    with torch.no_grad():
        assert torch.allclose(net.eval()(image, cue)[-1], branch.model.eval()(image, cue)[0],
                              atol=1e-6)
    plain = tmp_path / "hrnet.pt"
    save_backbone(plain, pre.model)
    with pytest.raises(ConfigError, match="hrnet.pt: does not fit this model"):
        load_branch_init(net, plain)
    with pytest.raises(ConfigError, match="this model has no cue"):
        load_branch_init(spec_of(pre.config).build(), cue_file)
    # the recurrent branch starts an R.R. model exactly (feedback blocks included)
    rec_file = tmp_path / "recurrent.pt"
    torch.save(rec.model.state_dict(), rec_file)
    rr = spec_of(rec.config).build()
    load_branch_init(rr, rec_file)
    with torch.no_grad():
        assert all(torch.allclose(a, b) for a, b in zip(rr.eval()(image), rec.model.eval()(image),
                                                        strict=True))
    with pytest.raises(ConfigError, match="nope.pt: branch weights not found"):
        load_branch_init(rr, tmp_path / "nope.pt")


class _Oracle(torch.nn.Module):
    """Returns, batch after batch, the given heatmaps (the dataset's own targets)."""

    def __init__(self, maps: torch.Tensor) -> None:
        super().__init__()
        self.maps, self.seen = maps, 0
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, images: torch.Tensor, cue: torch.Tensor | None = None) -> list[torch.Tensor]:
        out = self.maps[self.seen:self.seen + images.shape[0]]
        self.seen += images.shape[0]
        return [out + 0 * self.anchor]


@pytest.mark.parametrize("target", ["hrnet", "unbiased"])
def test_learning_curve_ap_is_the_pipelines_gt_box_ap(splits, tmp_path: Path,
                                                       target: str) -> None:
    """ValAP scores a network on every person of a fixed subset of val images, through the
    infer stage's code: perfect heatmaps (the targets of those persons) score high, and DARK
    with unbiased targets beats HRNet's decode; a network whose maps are 0 scores 0."""
    from hintpose.topdown.val_ap import ValAP

    _, val = splits
    spec = ModelSpec(width=4, modules=(1, 1, 1), blocks=1, init="he", cue="none",
                     recurrent=False, hops=1, keypoint_names=tuple(NAMES), input_width=96,
                     input_height=128, sigma=2.0, target=target, cue_sigma=4.0,
                     box_padding=1.25)
    decoder = "dark" if target == "unbiased" else "hrnet"
    curve = ValAP(val, 3, 0, decoder, 4)
    assert len(curve.image_ids) == 3 and curve.image_ids == ValAP(val, 3, 0, decoder, 4).image_ids
    assert {b["image_id"] for b in curve.boxes} == set(curve.image_ids)
    params = spec.data_params()
    inst = [i for i in training_instances(val) if i.image_id in set(curve.image_ids)]
    assert [i.bbox for i in inst] == [tuple(b["bbox"]) for b in curve.boxes]
    maps = torch.stack([TopDownDataset(val, inst, params, train=False)[i]["target"]
                        for i in range(len(inst))])
    ap = curve(_Oracle(maps), spec, CPU, tmp_path / "heat.npy")
    assert ap > (95 if target == "unbiased" else 70)
    assert not (tmp_path / "heat.npy").exists()
    assert curve(_Oracle(torch.zeros_like(maps)), spec, CPU, tmp_path / "heat.npy") == 0.0


def test_branches_without_a_pretraining_are_a_clear_error() -> None:
    """The branches continue a pretraining: cue_epochs with pretrain.epochs 0 names both."""
    with pytest.raises(ConfigError, match=r"pretrain.cue_epochs \(2\) needs pretrain.epochs > 0"):
        PoseParams(pretrain=PosePretrainParams(epochs=0, cue_epochs=2))
    PoseParams(pretrain=PosePretrainParams(epochs=0, cue_epochs=0))  # the report's start


def test_recurrent_model_trains_on_corrupted_detached_weighted_feedback(splits) -> None:
    """feedback_corrupt, feedback_detach and hop_weights: a recurrent model trains on them
    (the logged loss is the weighted sum it minimises), deterministically; a one-hop model
    ignores them."""
    train, _ = splits
    base = tiny_pose(epochs=1)
    data = replace(base.data, feedback_corrupt=0.5, feedback_detach=True, hop_weights=(0.25, 1.0))
    pose = replace(base, data=data)
    runs = [fit_model(train, None, pose, ModelParams(recurrent=True), CPU, progress=False)
            for _ in range(2)]
    row = runs[0].log[0]
    assert row["train_loss"] == pytest.approx(0.25 * row["train_loss_hop1"]
                                              + row["train_loss_hop2"])
    assert states_equal(runs[0].model, runs[1].model)
    plain = fit_model(train, None, base, ModelParams(recurrent=True), CPU, progress=False)
    assert not states_equal(plain.model, runs[0].model)
    single = fit_model(train, None, pose, ModelParams(), CPU, progress=False)
    same = fit_model(train, None, base, ModelParams(), CPU, progress=False)
    assert states_equal(single.model, same.model)


def test_center_jitter_belongs_to_the_schedule(splits) -> None:
    """A fine-tune's crops move by ``pose.train.center_jitter`` (its trained weights differ
    from HRNet's centred crops'), and the branches keep the pretraining's crops and pairs."""
    train, _ = splits
    pose = tiny_pose(epochs=1)
    moved = replace(pose.pretrain, center_jitter=(0.1, 0.05))
    assert branch_schedule(moved).center_jitter == (0.1, 0.05)
    assert branch_schedule(pose.pretrain).center_jitter == (0.0, 0.0)
    assert branch_schedule(pose.pretrain).paired_cues and not pose.train.paired_cues
    runs = [fit_model(train, None, replace(pose, train=replace(pose.train, center_jitter=jit)),
                      ModelParams(), CPU, progress=False) for jit in ((0.0, 0.0), (0.2, 0.1))]
    assert not states_equal(runs[0].model, runs[1].model)
