"""HRNet (official state-dict layout) and HintPose (cue, recurrent refinement, loss)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from hintpose.models.hintpose import HintPose, joints_mse_loss
from hintpose.models.hrnet import HRNet, load_pretrained

#: Names and shapes of the official PoseHighResolutionNet state dicts (W32, W48), a copy of
#: ../shared/reference/hrnet_official_state_dict_shapes.json kept with the tests.
REFERENCE = Path(__file__).resolve().parent / "data" / "hrnet_official_state_dict_shapes.json"
H, W = 64, 48  # small input: heatmaps 16 x 12


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from a second thread, and two spinning OpenMP threads on a
    CPU shared with other jobs make these tests many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and BN statistic non-trivial values (the official init makes all
    outputs ~0, which would make equality tests vacuous)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:  # conv weights: He-normal
                p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / p[0].numel()) ** 0.5)
            else:  # BN weights around 1, biases around 0
                offset = 0.75 if name.endswith("weight") else -0.25
                p.copy_(torch.rand(p.shape, generator=gen) * 0.5 + offset)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


def zero_added_convs(net: HintPose) -> None:
    for block in (net.cue_block, net.update_block):
        if block is not None:
            nn.init.zeros_(block[-1].weight)
            nn.init.zeros_(block[-1].bias)


def inputs(n: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(n, 3, H, W, generator=gen)
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    centers = torch.rand(n, 2, generator=gen) * torch.tensor([W, H])
    cue = torch.exp(-((xs - centers[:, 0, None, None]) ** 2 + (ys - centers[:, 1, None, None])
                      ** 2) / (2 * 4.0**2))
    return image, cue[:, None].float()


@pytest.mark.parametrize("width", [32, 48])
def test_state_dict_matches_official(width: int) -> None:
    reference = json.loads(REFERENCE.read_text())[f"w{width}"]
    with torch.device("meta"):
        net = HRNet(width)
    ours = [(k, list(v.shape)) for k, v in net.state_dict().items()]
    assert ours == [(k, list(v)) for k, v in reference.items()]
    assert len(ours) == 1754


def test_shallow_layout_is_a_subset_of_the_official_names() -> None:
    """Fewer modules and blocks (HRNetV2-W18-Small-v1's layout) keep the official names: every
    entry exists in the official W32 state dict, with the same shape."""
    reference = json.loads(REFERENCE.read_text())["w32"]
    with torch.device("meta"):
        net = HRNet(32, modules=(1, 1, 1), blocks=2)
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert ours and all(reference[k] == shape for k, shape in ours.items())
    assert len(ours) < len(reference) // 3
    assert "stage3.1.branches.0.0.conv1.weight" not in ours
    assert "stage2.0.branches.0.2.conv1.weight" not in ours
    small = HintPose(8, "point", True, hops=2, modules=(1, 2, 1), blocks=1).eval()
    image, cue = inputs()
    assert [o.shape for o in small(image, cue)] == [(2, 17, H // 4, W // 4)] * 2
    for bad in ({"modules": (1, 1)}, {"modules": (1, 0, 1)}, {"blocks": 0}):
        with pytest.raises(ValueError, match="modules|blocks"):
            HRNet(8, **bad)


def test_he_init_scales_convs_but_not_the_final_layer() -> None:
    torch.manual_seed(0)
    net = HRNet(16, init="he")
    conv = net.stage2[0].branches[0][0].conv1  # 3x3, 16 -> 16: fan-out 144
    assert abs(float(conv.weight.std()) - (2.0 / 144) ** 0.5) < 0.02
    assert float(net.final_layer.weight.std()) < 0.002
    assert float(HRNet(16).stage2[0].branches[0][0].conv1.weight.std()) < 0.002
    with pytest.raises(ValueError, match="init must be one of official, he"):
        HRNet(8, init="xavier")


def test_hrnet_output_shape_and_init() -> None:
    net = HRNet(width=8, num_joints=5).eval()
    assert net(torch.randn(2, 3, H, W)).shape == (2, 5, H // 4, W // 4)
    # Sizes not divisible by 32 work too (upsampling goes to the target size).
    assert net(torch.randn(1, 3, 72, 40)).shape == (1, 5, 18, 10)
    assert float(net.final_layer.weight.detach().std()) < 0.01
    assert torch.all(net.final_layer.bias == 0)


@pytest.mark.parametrize(("cue", "recurrent"),
                         [("point", False), ("none", True), ("point", True)])
def test_untrained_additions_keep_hrnet_output(cue: str, recurrent: bool) -> None:
    hrnet = randomize(HRNet(8)).eval()
    net = randomize(HintPose(8, cue, recurrent, hops=3), seed=1)
    zero_added_convs(net)
    net.backbone.load_state_dict(hrnet.state_dict())
    net.eval()
    image, cue_map = inputs()
    with torch.no_grad():
        expected = hrnet(image)
        outputs = net(image, cue_map if cue != "none" else None)
    assert len(outputs) == (3 if recurrent else 1)
    assert expected.abs().mean() > 0.1
    for out in outputs:
        assert torch.equal(out, expected)


def test_fresh_hintpose_equals_fresh_hrnet_weights() -> None:
    torch.manual_seed(0)
    net = HintPose(8, "point", True, hops=2).eval()
    image, cue_map = inputs()
    with torch.no_grad():
        outs = net(image, cue_map)
        assert torch.equal(outs[0], net.backbone(image))
        assert torch.equal(outs[1], outs[0])


def test_perturbed_additions_are_used() -> None:
    net = randomize(HintPose(8, "point", True, hops=3), seed=2).eval()  # zero convs perturbed
    image, cue_map = inputs()
    with torch.no_grad():
        outs = net(image, cue_map)
        other_cue = net(image, cue_map.flip(-1))
    assert not torch.allclose(outs[0], outs[1])
    assert not torch.allclose(outs[1], outs[2])
    assert not torch.allclose(outs[0], other_cue[0])  # the cue changes the output


def test_joints_mse_loss_sums_hops() -> None:
    net = randomize(HintPose(8, "none", True, hops=3), seed=3).eval()
    image, _ = inputs()
    target = torch.rand(2, 17, H // 4, W // 4)
    weight = torch.ones(2, 17, 1)
    weight[0, 3] = 0
    with torch.no_grad():
        outs = net(image)
    assert len(outs) == 3
    total = joints_mse_loss(outs, target, weight)
    singles = [joints_mse_loss([o], target, weight) for o in outs]
    assert torch.allclose(total, sum(singles))
    # Official formula: per joint 0.5 * MSE(pred * w, gt * w), averaged over joints.
    w = weight[:, :, :, None]
    per_joint = [0.5 * ((outs[0][:, j] * w[:, j] - target[:, j] * w[:, j]) ** 2).mean()
                 for j in range(17)]
    assert torch.allclose(singles[0], torch.stack(per_joint).mean())
    # bf16 outputs are scored in fp32.
    bf16 = joints_mse_loss([o.bfloat16() for o in outs], target, weight)
    assert bf16.dtype == torch.float32
    with pytest.raises(ValueError, match="differ in shape"):
        joints_mse_loss([outs[0][:, :5]], target, weight)
    with pytest.raises(ValueError, match="empty"):
        joints_mse_loss([], target, weight)


def test_load_pretrained_round_trip(tmp_path: Path) -> None:
    source = randomize(HRNet(8))
    plain = tmp_path / "plain.pth"
    torch.save(source.state_dict(), plain)
    nested = tmp_path / "nested.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()},
                "epoch": 3}, nested)
    for file in (plain, nested):
        net = HintPose(8, "point", True)
        net.load_backbone(file)
        loaded = net.backbone.state_dict()
        for key, value in source.state_dict().items():
            assert torch.equal(loaded[key], value), key


def _fake_official_checkpoint(width: int, path: Path) -> Path:
    """An official-layout checkpoint of the right shapes, stored cheaply as expanded
    zero-dim tensors (a W48 state dict is 64M floats otherwise)."""
    reference = json.loads(REFERENCE.read_text())[f"w{width}"]
    state = {k: (torch.zeros((), dtype=torch.long) if k.endswith("num_batches_tracked")
                 else torch.ones(()).expand(shape))
             for k, shape in reference.items()}
    torch.save(state, path)
    return path


def test_official_layout_loads_strictly_and_w48_into_w32_is_named(tmp_path: Path) -> None:
    w32 = _fake_official_checkpoint(32, tmp_path / "pose_hrnet_w32_256x192.pth")
    w48 = _fake_official_checkpoint(48, tmp_path / "pose_hrnet_w48_384x288.pth")
    with torch.device("meta"):
        net = HRNet(32)
    net.to_empty(device="cpu")
    load_pretrained(net, w32)
    assert torch.all(net.final_layer.weight == 1)
    with pytest.raises(ValueError, match="checkpoint is for HRNet-W48, model is W32") as info:
        load_pretrained(net, w48)
    message = str(info.value)
    assert str(w48) in message
    assert "transition1.0.0.weight [48, 256, 3, 3] vs [32, 256, 3, 3]" in message


def test_load_pretrained_errors(tmp_path: Path) -> None:
    net = HRNet(8)
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_pretrained(net, missing)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pth is not a PyTorch"):
        load_pretrained(net, text)
    listing = tmp_path / "list.pth"
    torch.save([1, 2, 3], listing)
    with pytest.raises(ValueError, match="list.pth holds a list"):
        load_pretrained(net, listing)
    partial = tmp_path / "partial.pth"
    state = net.state_dict()
    state.pop("final_layer.bias")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, partial)
    with pytest.raises(ValueError, match="missing from the checkpoint, e.g. final_layer.bias"):
        load_pretrained(net, partial)
    joints = tmp_path / "joints.pth"
    torch.save(HRNet(8, num_joints=14).state_dict(), joints)
    with pytest.raises(ValueError, match=r"final_layer.weight \[14, 8, 1, 1\] vs \[17, 8, 1, 1\]"):
        load_pretrained(net, joints)


@pytest.mark.parametrize("kwargs", [
    {"width": 0}, {"width": -8}, {"width": 8.0}, {"width": True}, {"hops": 0},
    {"num_joints": 0}, {"cue": 1}, {"cue": "box"}, {"recurrent": 1},
])
def test_bad_constructor_args(kwargs: dict) -> None:
    args = {"width": 8, "cue": "none", "recurrent": True, "hops": 3} | kwargs
    with pytest.raises(ValueError, match="HintPose"):
        HintPose(**args)


def test_cue_required_iff_instance_cue() -> None:
    image, cue_map = inputs(1)
    with pytest.raises(ValueError, match="pass cue"):
        HintPose(8, "point", False)(image)
    with pytest.raises(ValueError, match="no cue input"):
        HintPose(8, "none", False)(image, cue_map)
    with pytest.raises(ValueError, match="cue must be"):
        HintPose(8, "point", False)(image, cue_map[:, :, :32])
    with pytest.raises(ValueError):
        HRNet(width=0)


def test_bf16_autocast_channels_last() -> None:
    net = randomize(HintPose(8, "point", True, hops=2), seed=4).eval()
    image, cue_map = inputs()
    with torch.no_grad():
        fp32 = net(image, cue_map)
    net = net.to(memory_format=torch.channels_last)
    image = image.to(memory_format=torch.channels_last)
    cue_map = cue_map.to(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = net(image, cue_map)
    for ref, low in zip(fp32, bf16, strict=True):
        assert low.dtype == torch.bfloat16
        assert (ref - low.float()).norm() < 0.1 * ref.norm()
    net.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outs = net(image, cue_map)
        loss = joints_mse_loss(outs, torch.rand(2, 17, 16, 12), torch.ones(2, 17, 1))
    assert [o.shape for o in outs] == [(2, 17, 16, 12)] * 2
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert net.update_block[-1].weight.grad is not None


def test_adam_lowers_loss() -> None:
    torch.manual_seed(0)
    net = HintPose(8, "point", True, hops=2).train()
    image, cue_map = inputs(4, seed=5)
    target = torch.rand(4, 17, H // 4, W // 4)
    weight = torch.ones(4, 17, 1)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        loss = joints_mse_loss(net(image, cue_map), target, weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.9 * losses[0]
    # The zero-initialised convs learn (they receive gradient and move off zero).
    assert net.cue_block[-1].weight.abs().sum() > 0
    assert net.update_block[-1].weight.abs().sum() > 0


def test_config_knows_the_official_layout() -> None:
    """config.py repeats the official layout without importing torch; they must agree."""
    from hintpose.config import HRNET_BLOCKS, HRNET_MODULES
    from hintpose.models.hrnet import OFFICIAL_BLOCKS, OFFICIAL_MODULES

    assert (HRNET_MODULES, HRNET_BLOCKS) == (OFFICIAL_MODULES, OFFICIAL_BLOCKS)
