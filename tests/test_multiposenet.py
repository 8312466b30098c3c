"""MultiPoseNet: the network's structure, bottom-up targets, training (loss, resume), files."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml

from hintpose.bottomup.cues import load_model
from hintpose.bottomup.targets import BottomUpCodec, BottomUpDataset, build_codec
from hintpose.bottomup.training import BottomUpTask, model_config, train_multiposenet
from hintpose.config import MultiPoseNetParams, MultiPoseNetTrainParams
from hintpose.data.coco import CocoPersons
from hintpose.data.params import DatasetParams, SyntheticConfig
from hintpose.data.prepare import prepare_dataset
from hintpose.data.transforms import transform_points
from hintpose.engine import CHECKPOINT
from hintpose.errors import DataError
from hintpose.models.folder import save_network
from hintpose.models.multiposenet import MultiPoseNet, multiposenet_loss
from hintpose.models.resnet import ResNetTrunk
from hintpose.runtime import Runtime
from hintpose.trainlog import read_log

ROOT = Path(__file__).resolve().parents[1]
#: A network and schedule small enough for seconds on a CPU.
TINY = MultiPoseNetParams(
    depth=10, width=8, fpn_channels=16, head_channels=16, input_width=96, input_height=64,
    sigma=1.5, train=MultiPoseNetTrainParams(epochs=3, batch_size=4, lr=3e-3, val_images=4,
                                             workers=0, lr_steps=(0.9,)))
#: fp32, channels_last (the trunk of TINY is wide enough for it on a CPU).
CPU = Runtime(torch.device("cpu"), bf16=False, channels_last=True)
LOG_COLUMNS = ["epoch", "lr", "train_loss", "train_loss_final", "val_loss", "val_loss_final",
               "val_cue_recall", "seconds", "img_s"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, CocoPersons]]:
    root = tmp_path_factory.mktemp("mpn") / "dataset"
    cfg = SyntheticConfig(image_width=128, image_height=96, persons_min=2, persons_max=3,
                          distractors=2)
    splits = prepare_dataset(root, DatasetParams(train_images=8, val_images=4, synthetic=cfg),
                             progress=False)
    return root, splits


# --------------------------------------------------------------------------- network


def test_trunk_is_torchvision_resnet_at_width_64() -> None:
    ours = ResNetTrunk(18, 64).state_dict()
    ref = {k: v for k, v in torchvision.models.resnet18(weights=None).state_dict().items()
           if not k.startswith("fc.")}
    assert {k: tuple(v.shape) for k, v in ours.items()} == {
        k: tuple(v.shape) for k, v in ref.items()}


@pytest.mark.parametrize(("depth", "width", "channels"), [
    (10, 8, [8, 16, 32, 64]), (34, 4, [4, 8, 16, 32]), (50, 4, [16, 32, 64, 128])])
def test_depth_and_width_set_the_trunk(depth: int, width: int, channels: list[int]) -> None:
    trunk = ResNetTrunk(depth, width)
    assert trunk.out_channels == channels
    feats = trunk(torch.zeros(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == channels
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    blocks = sum(len(getattr(trunk, f"layer{i}")) for i in range(1, 5))
    assert blocks == {10: 4, 34: 16, 50: 16}[depth]


def test_outputs_and_intermediate_supervision() -> None:
    net = MultiPoseNet(10, 8, num_joints=17, fpn_channels=16, head_channels=8)
    assert type(net.backbone) is ResNetTrunk  # the one trunk PoseFix uses too
    maps, levels = net(torch.randn(2, 3, 64, 96))
    assert maps.shape == (2, 18, 16, 24)
    assert [tuple(lv.shape) for lv in levels] == [(2, 18, 16 // s, 24 // s) for s in (1, 2, 4, 8)]
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.randn(1, 3, 60, 96))
    with pytest.raises(ValueError, match="depth must be one of"):
        MultiPoseNet(depth=20)


def test_loss_is_l2_over_final_and_levels() -> None:
    target = torch.zeros(1, 2, 8, 8)
    target[0, 0, 3, 5] = 1.0
    weight = torch.ones_like(target)
    levels = [target.clone(), torch.nn.functional.adaptive_max_pool2d(target, 4)]
    total, final = multiposenet_loss(target.clone(), levels, target, weight)
    assert float(total) == 0.0 and float(final) == 0.0
    total, final = multiposenet_loss(torch.zeros_like(target), [], target, weight)
    assert float(final) == pytest.approx(0.5 / target.numel())
    # weight 0 on the only wrong pixel: nothing to learn there
    weight[0, 0, 3, 5] = 0
    assert float(multiposenet_loss(torch.zeros_like(target), [], target, weight)[0]) == 0.0
    with pytest.raises(ValueError, match="target and weight"):
        multiposenet_loss(target, [], target[:, :1], weight)


def test_pretrained_trunk_loads_torchvision_weights(tmp_path: Path) -> None:
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "resnet18.pth")
    net = MultiPoseNet(18, 64, fpn_channels=8, head_channels=8)
    net.load_backbone(tmp_path / "resnet18.pth")
    assert torch.equal(net.backbone.layer3[1].conv2.weight, ref.layer3[1].conv2.weight)
    with pytest.raises(RuntimeError):
        MultiPoseNet(18, 32, fpn_channels=8, head_channels=8).load_backbone(
            tmp_path / "resnet18.pth")


# --------------------------------------------------------------------------- targets


def test_codec_targets() -> None:
    codec = BottomUpCodec((64, 32), sigma=1.0)
    joints = np.array([[[3.25, 2.0], [10.0, 5.0]], [[12.0, 4.0], [0.0, 0.0]]])
    use = np.array([[True, True], [True, False]])
    persons = np.zeros((8, 16), np.float32)
    persons[2:5, 2:6] = 1
    ignore = np.zeros_like(persons)
    ignore[0, :] = 1
    target, weight = codec.encode(joints, use, persons, ignore)
    assert target.shape == weight.shape == (3, 8, 16)
    # joint 0: the max of two persons' Gaussians, peaks at their (rounded) positions
    assert target[0, 2, 3] == pytest.approx(np.exp(-0.0625 / 2))
    assert target[0, 4, 12] == pytest.approx(1.0)
    assert target[0, 3, 8] < 0.05  # between them
    # joint 1: only person 0 uses it
    assert target[1].max() == pytest.approx(1.0) and target[1, 0, 0] < 1e-6
    np.testing.assert_array_equal(target[2], persons)
    assert (weight[:2, 0] == 0).all() and (weight[:2, 1:] == 1).all() and (weight[2] == 1).all()


def test_samples_put_peaks_on_the_joints(dataset: tuple[Path, dict[str, CocoPersons]]) -> None:
    coco = dataset[1]["val"]
    codec = build_codec(model_config(TINY, coco))
    ds = BottomUpDataset(coco, sorted(coco.images), codec, visible_only=True)
    checked = 0
    for i in range(len(ds)):
        image, target, weight, meta = ds[i]
        assert image.shape == (3, 64, 96) and target.shape == weight.shape == (18, 16, 24)
        back = codec.heatmap_matrix(meta["center"], meta["size"], inverse=True)
        for ann in coco.annotations_of(meta["image_id"]):
            kpts = np.asarray(ann["keypoints"], float).reshape(-1, 3)
            for j in np.flatnonzero(kpts[:, 2] == 2):
                # the target's local maximum near the joint maps back onto it
                hm = transform_points(kpts[j, :2], codec.heatmap_matrix(
                    meta["center"], meta["size"]))
                x, y = np.clip(np.round(hm).astype(int), 0, [23, 15])
                assert target[j, y, x] > 0.5
                pixel = meta["size"][0] / 24  # image pixels per heatmap pixel
                assert np.hypot(*(transform_points(np.array([x, y], float), back)
                                  - kpts[j, :2])) <= 0.5 * np.sqrt(2) * pixel + 1e-4
                checked += 1
    assert checked > 10


def test_flip_augmentation_swaps_sides(dataset: tuple[Path, dict[str, CocoPersons]]) -> None:
    from hintpose.bottomup.targets import Augmentation

    coco = dataset[1]["val"]
    codec = build_codec(model_config(TINY, coco))
    ids = sorted(coco.images)[:1]
    plain = BottomUpDataset(coco, ids, codec)[0]
    flips = [BottomUpDataset(coco, ids, codec, augment=Augmentation(flip=True), seed=s)[(0, 0)]
             for s in range(8)]
    flipped = [f for f in flips if not torch.equal(f[0], plain[0])]
    assert flipped, "no sample was flipped in 8 draws"
    image, target = flipped[0][0], flipped[0][1]

    def mismatch(a: torch.Tensor, b: torch.Tensor) -> float:
        """Mean absolute difference, allowing the one-pixel offset of mirroring conventions."""
        return min(float((a - b.roll(s, -1)).abs().mean()) for s in (-1, 0, 1))

    mirrored_image, mirrored_maps = plain[0].flip(2), plain[1].flip(2)
    assert mismatch(image, mirrored_image) < 0.3 * mismatch(image, plain[0])
    perm = list(range(18))
    for a, b in ds_pairs(coco):
        perm[a], perm[b] = b, a
    # left joints of the flipped sample are the mirrored right joints of the plain one
    assert mismatch(target[perm], mirrored_maps) < 0.5 * mismatch(target, mirrored_maps)
    assert mismatch(target[17], mirrored_maps[17]) < 0.02  # segmentation


def ds_pairs(coco: CocoPersons) -> list[tuple[int, int]]:
    from hintpose.data.transforms import flip_pairs_from_names

    return flip_pairs_from_names(coco.category["keypoints"])


# --------------------------------------------------------------------------- training, files


def test_training_lowers_the_loss_and_resumes_exactly(
        dataset: tuple[Path, dict[str, CocoPersons]], tmp_path: Path) -> None:
    train, val = dataset[1]["train"], dataset[1]["val"]
    torch.manual_seed(TINY.seed)
    config = model_config(TINY, train)
    untrained = MultiPoseNet.from_config(config)
    task = BottomUpTask(train, val, sorted(train.images), TINY, config, CPU)
    before = task.validate(untrained)
    assert before["val_loss"] > before["val_loss_final"] > 0
    assert 0 <= before["val_cue_recall"] <= 1  # the learning curve's cue recall

    full = train_multiposenet(train, val, TINY, CPU, tmp_path / "a" / CHECKPOINT,
                              progress=False)
    assert [r["epoch"] for r in full.log] == [1, 2, 3]
    assert all(list(r) == LOG_COLUMNS for r in full.log)
    assert [r["lr"] for r in full.log] == pytest.approx([3e-3, 3e-3, 3e-3])  # step at 0.9 * 3
    assert full.log[-1]["val_loss"] < 0.8 * before["val_loss"]
    assert full.log[-1]["train_loss"] < full.log[0]["train_loss"]
    assert all(0 <= r["val_cue_recall"] <= 1 for r in full.log)

    class Killed(Exception):
        pass

    def kill_after_two(epoch: int, row: dict[str, float]) -> None:
        if epoch == 1:
            raise Killed

    cut = tmp_path / "b" / CHECKPOINT
    with pytest.raises(Killed):
        train_multiposenet(train, val, TINY, CPU, cut, progress=False,
                           on_epoch_end=kill_after_two)
    resumed = train_multiposenet(train, val, TINY, CPU, cut, progress=False)
    assert resumed.resumed_epochs == 2 and len(resumed.log) == 3
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k
    for a, b in zip(full.log, resumed.log, strict=True):
        assert (a["train_loss"], a["val_loss"]) == (b["train_loss"], b["val_loss"])
    # a checkpoint of other settings is not resumed
    other = replace(TINY, train=replace(TINY.train, epochs=1))
    assert train_multiposenet(train, val, other, CPU, cut,
                              progress=False).resumed_epochs == 0


def test_model_files_round_trip_and_errors(tmp_path: Path) -> None:
    config = {"depth": 10, "width": 4, "fpn_channels": 8, "head_channels": 8, "num_joints": 17,
              "input_width": 64, "input_height": 64, "sigma": 1.5, "visible_only": True,
              "keypoint_names": [f"k{i}" for i in range(17)], "seed": 1}
    net = MultiPoseNet.from_config(config)
    save_network(tmp_path / "m", net, config)
    loaded, cfg = load_model(tmp_path / "m")
    assert cfg == config and not loaded.training
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(loaded(x)[0], net.eval()(x)[0])
    with pytest.raises(DataError, match="run the train_multiposenet stage"):
        load_model(tmp_path / "missing")
    (tmp_path / "m" / "model.json").write_text(json.dumps({**config, "width": 8}))
    with pytest.raises(DataError, match="model.pt: does not fit model.json"):
        load_model(tmp_path / "m")


def test_stage_writes_model_and_removes_checkpoint(
        dataset: tuple[Path, dict[str, CocoPersons]], tmp_path: Path) -> None:
    params = yaml.safe_load((ROOT / "params.smoke.yaml").read_text())
    params["multiposenet"].update(depth=10, width=4, fpn_channels=8, head_channels=8,
                                  input_width=64, input_height=64)
    params["multiposenet"]["train"].update(epochs=1, workers=0)
    params["runtime"].update(device="cpu", threads=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "stages/train_multiposenet.py"), "--params",
           str(tmp_path / "params.yaml"), "--dataset", str(dataset[0]), "--out", str(out / "m"),
           "--checkpoints", str(out / "ckpt"), "--log-dir", str(out / "log")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "m" / "model.pt").is_file() and not (out / "ckpt" / CHECKPOINT).exists()
    assert proc.stdout.count("epoch 1/1") == 1
    metrics = json.loads((out / "log" / "metrics.json").read_text())
    assert metrics["train_loss"] > 0 and metrics["lr"] == pytest.approx(0.002)
    log = read_log(out / "log")
    assert log["epoch"].tolist() == [1] and sorted(log.columns) == sorted(LOG_COLUMNS)
    assert load_model(out / "m")[1]["input_width"] == 64


def test_narrow_trunks_avoid_the_channels_last_crash() -> None:
    assert not MultiPoseNet(10, 4, fpn_channels=8, head_channels=8).channels_last_trainable()
    assert MultiPoseNet(10, 8, fpn_channels=8, head_channels=8).channels_last_trainable()
