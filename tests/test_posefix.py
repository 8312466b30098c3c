"""PoseFix: error synthesis at its configured rates and geometry, the network and its loss,
brief training that leaves a GT input pose in place, resume, refinement and its errors."""

from __future__ import annotations

import dataclasses
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hintpose.config import PosefixParams, PosefixTrainParams
from hintpose.data.keypoints import COCO_SIGMAS, KEYPOINT_NAMES
from hintpose.data.params import DatasetParams
from hintpose.data.prepare import prepare_dataset
from hintpose.engine import CHECKPOINT
from hintpose.errors import ConfigError, DataError
from hintpose.models.folder import save_network
from hintpose.models.hrnet import HRNet
from hintpose.models.posefix import (
    PoseFix,
    PoseFixHRNet,
    bilinear_target,
    gaussian_targets,
    heatmap_loss,
    posefix_loss,
    soft_argmax,
)
from hintpose.models.resnet import ResNetTrunk
from hintpose.posefix.analysis import (
    classify_joints,
    error_mix,
    plot_refinement,
    refinement_analysis,
)
from hintpose.posefix.refine import load_model, read_pose_results, refine_results
from hintpose.posefix.synthesis import (
    ERROR_TYPES,
    INVERSION,
    MISS,
    SWAP,
    UNLABELED,
    JointGroups,
    ks_radius,
    mix_table,
    pose_crop,
    synthesize_pose,
    type_probabilities,
)
from hintpose.posefix.training import HRNetStart, train_posefix
from hintpose.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
GROUPS = JointGroups.from_names(KEYPOINT_NAMES)


# --------------------------------------------------------------------------- error synthesis


def spread_person(labeled: int) -> tuple[np.ndarray, np.ndarray]:
    """A person whose joints lie 200 px apart (far beyond r(0.1) for the area used), the first
    ``labeled`` joints labeled, and one nearby person offset by 100 px."""
    grid = np.array([(200.0 * (j % 5), 200.0 * (j // 5)) for j in range(17)])
    kpts = np.concatenate([grid, np.zeros((17, 1))], axis=1)
    kpts[:labeled, 2] = 2
    kpts[[1, 3, 5, 7, 9, 11, 13, 15][: max(0, labeled - 9)], 2] = 2  # some counterparts
    other = kpts.copy()
    other[:, :2] += 100.0
    other[:, 2] = 2
    return kpts, other[None]


#: A fitted error mix (posefix.error_mix): per joint group good, jitter, inversion, swap, miss.
FITTED = {"face": (0.45, 0.25, 0.0, 0.08, 0.22), "upper": (2.0, 1.0, 0.5, 0.5, 1.0),
          "lower": (0.5, 0.15, 0.15, 0.1, 0.1)}


def expected_rates(kpts: np.ndarray, nearby: np.ndarray, mix: np.ndarray | None = None
                   ) -> np.ndarray:
    labeled = kpts[:, 2] > 0
    p = type_probabilities(GROUPS, int(labeled.sum()), len(nearby), mix)
    for j in range(17):
        c = GROUPS.counterpart[j]
        if c < 0 or not labeled[c]:
            p[j, INVERSION] = 0
        if len(nearby) == 0:
            p[j, SWAP] = 0
    return p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("labeled,crowd,fitted", [(17, 1, False), (8, 1, False),
                                                  (17, 0, False), (17, 1, True)])
def test_error_types_come_at_their_configured_rates(labeled: int, crowd: int,
                                                    fitted: bool) -> None:
    kpts, nearby = spread_person(labeled)
    nearby = nearby[:crowd]
    mix = mix_table(FITTED) if fitted else None
    area, draws = 2500.0, 1500
    rng = np.random.default_rng(7)
    counts = np.zeros((17, 5))
    for draw in range(draws):
        points, types = synthesize_pose(rng, kpts, (0, 0, 800, 600), area, nearby, GROUPS,
                                        COCO_SIGMAS, mix)
        for j in np.flatnonzero(types >= 0):
            counts[j, types[j]] += 1
        assert (types[kpts[:, 2] == 0] == UNLABELED).all()
        if draw < 200:  # every point is of the type it claims, by the analysis' classification
            got = classify_joints(points, kpts, nearby, area, COCO_SIGMAS, GROUPS.counterpart)
            np.testing.assert_array_equal(got, types)
        inside = points[kpts[:, 2] == 0]
        assert ((inside >= 0) & (inside <= [800, 600])).all()
    expected = expected_rates(kpts, nearby, mix)
    lab = kpts[:, 2] > 0
    freq = counts[lab] / draws
    tol = 4.5 * np.sqrt(expected[lab] * (1 - expected[lab]) / draws) + 1e-9
    assert (np.abs(freq - expected[lab]) <= tol).all(), (freq - expected[lab]).round(3)
    # the tables themselves: a crowded person with few joints swaps upper-body joints at 0.15
    if labeled == 8:
        assert expected[5, SWAP] == pytest.approx(0.15)
    if fitted:  # the fitted rows, normalised: upper body (shoulders..wrists) 2:1:0.5:0.5:1
        assert expected[5].tolist() == pytest.approx([0.4, 0.2, 0.1, 0.1, 0.2])
        assert expected[0, INVERSION] == 0 and expected[0, MISS] == pytest.approx(0.22)
    if crowd == 0:
        assert counts[:, SWAP].sum() == 0


def test_probability_tables_follow_posefix() -> None:
    p = type_probabilities(GROUPS, 17, 0)
    assert p[0].tolist() == pytest.approx([1 - 0.10 - 0.01 - 0.01 - 0.02, 0.10, 0.01, 0.01,
                                           0.02])
    assert p[11, 1] == 0.20 and p[11, 4] == 0.10 and p[11, 2] == 0.06 and p[11, 3] == 0.03
    p = type_probabilities(GROUPS, 5, 1)
    assert p[15, 1] == 0.15 and p[15, 4] == 0.20 and p[5, 4] == 0.20 and p[7, 4] == 0.25
    assert p[9, 3] == 0.15 and p[13, 3] == 0.10 and p[2, 3] == 0.02
    assert type_probabilities(GROUPS, 14, 3)[9, 3] == 0.15  # valid <= 15 with 3 nearby
    assert type_probabilities(GROUPS, 14, 2)[9, 3] == 0.06
    assert float(ks_radius(0.5, 100.0, 0.1)) == pytest.approx(
        2 * 0.1 * np.sqrt(-2 * 100 * np.log(0.5)))
    assert mix_table({}) is None  # empty error_mix: PoseFix's tables


def test_fitted_error_mix_is_validated() -> None:
    assert PosefixParams(error_mix=FITTED).error_mix == FITTED
    for bad, match in (({"face": (1, 0, 0, 0, 0)}, "must give the groups face, upper, lower"),
                       ({**FITTED, "upper": (1, 0, 0, 0)}, r"error_mix.upper must be 5"),
                       ({**FITTED, "lower": (1, -1, 0, 0, 1)}, r">= 0 with a positive sum"),
                       ({**FITTED, "lower": (0, 0, 0, 0, 0)}, r"positive sum")):
        with pytest.raises(ConfigError, match=match):
            PosefixParams(error_mix=bad)
    PosefixParams(backbone="hrnet", input_width=72, input_height=96)
    with pytest.raises(ConfigError, match="multiple of 32 with backbone resnet, got 72"):
        PosefixParams(input_width=72)


# --------------------------------------------------------------------------- network and loss


def test_network_shapes_and_loss() -> None:
    torch.manual_seed(0)
    net = PoseFix(17, depth=18, width=8, head_channels=16).eval()
    assert net.trunk.conv1.in_channels == 20 and net.trunk.layer4[-1].conv2.out_channels == 64
    assert type(net.trunk) is ResNetTrunk  # the one trunk MultiPoseNet uses too
    out = net(torch.randn(2, 3, 64, 32), torch.zeros(2, 17, 64, 32))
    assert out.shape == (2, 17, 16, 8) and net.stride == 4
    # the shared ResNet trunk (C2-C5 channels); PoseFix's head reads C5
    assert PoseFix(17, depth=50, width=8, head_channels=8).trunk.out_channels == [32, 64, 128,
                                                                                  256]
    # the bilinear target sums to one and its soft-argmax is the point itself
    target = torch.tensor([[[3.25, 5.5], [0.0, 0.0], [9.0, 2.0]]])
    onehot, ok = bilinear_target(target, torch.ones(1, 3), 12, 8)
    assert ok.tolist() == [[True, True, False]]  # x = 9 lies outside an 8-wide map
    assert onehot[0, :2].sum(1).tolist() == pytest.approx([1.0, 1.0])
    logits = torch.log(onehot[:, :2].reshape(1, 2, 12, 8) + 1e-12)
    torch.testing.assert_close(soft_argmax(logits)[0], target[0, :2], atol=1e-4, rtol=0)
    loss, ce, l1 = posefix_loss(logits, target[:, :2], torch.ones(1, 2))
    assert l1 < 1e-3 and loss == pytest.approx(ce + l1)
    # with the input-pose skip an untrained network returns its input pose
    skip = PoseFix(17, depth=18, width=8, head_channels=8, input_skip=1.0).eval()
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(32.0), indexing="ij")
    point = torch.tensor([13.3, 41.7])
    maps = torch.exp(-((xs - point[0]) ** 2 + (ys - point[1]) ** 2) / (2 * 1.75**2))
    with torch.no_grad():
        xy = soft_argmax(skip(torch.zeros(1, 3, 64, 32), maps.expand(1, 17, 64, 32)))
    assert (xy[0] * skip.stride - point).abs().max() < 0.3


# --------------------------------------------------------------------------- training, refine


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny dataset and a tiny PoseFix trained briefly (with a resume check's pieces)."""
    root = tmp_path_factory.mktemp("posefix")
    splits = prepare_dataset(root / "dataset", DatasetParams(train_images=6, val_images=2),
                             progress=False)
    torch.set_num_threads(1)
    params = PosefixParams(width=8, head_channels=16, input_width=64, input_height=64,
                           batch_size=16, flip_test=True,
                           train=PosefixTrainParams(epochs=3, batch_size=16, lr=2e-3,
                                                    lr_steps=(0.6,), max_samples=0,
                                                    val_samples=8, workers=0))
    # bf16 autocast where the CPU has fast bf16 kernels (the project's path), else fp32
    rt = Runtime.create(torch.device("cpu"), bf16=True, channels_last=False, announce=False)
    result = train_posefix(splits["train"], splits["val"], params, rt, root / "ckpt" / CHECKPOINT,
                           progress=False)
    save_network(root / "model", result.model, result.config)
    return {"root": root, "params": params, "rt": rt, "result": result, **splits}


def gt_results(coco) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"],
             "score": 1.0} for a in coco.training_persons()]


def test_gt_input_pose_stays_close_after_brief_training(trained: dict) -> None:
    res, coco = trained["result"], trained["train"]
    assert len(res.log) == 3 and all(np.isfinite(r["val_loss"]) for r in res.log)
    assert [r["lr"] for r in res.log] == pytest.approx([2e-3, 2e-3, 2e-4])  # step at 0.6 * 3
    # the saved folder rebuilds the trained network
    net, config = load_model(trained["root"] / "model")
    assert config == json.loads(json.dumps(res.config))
    assert all(torch.equal(v, res.model.state_dict()[k].cpu())
               for k, v in net.state_dict().items())
    entries = gt_results(coco)
    out = refine_results(res.model, res.config, coco, entries, trained["params"],
                         trained["rt"], progress=False)
    assert len(out.refined) == len(entries)
    moved = []
    for before, after in zip(entries, out.refined, strict=True):
        gt, fixed = np.reshape(before["keypoints"], (-1, 3)), np.reshape(after["keypoints"],
                                                                         (-1, 3))
        lab = gt[:, 2] > 0
        height = max(np.ptp(gt[lab, 1]), 10.0)
        moved.append(np.linalg.norm(fixed[lab, :2] - gt[lab, :2], axis=1).mean() / height)
        assert after["score"] == before["score"]
        np.testing.assert_array_equal(fixed[:, 2], gt[:, 2])  # joint scores are kept
    assert np.median(moved) < 0.05, np.round(moved, 3)
    stats = refinement_analysis(coco, entries, out.refined)
    assert stats["matched_poses"] == len(entries)
    assert stats["by_error_type"]["good"]["joints"] == stats["overall"]["joints"]


def test_refinement_analysis_counts_real_moves_and_draws_them(trained: dict,
                                                               tmp_path: Path) -> None:
    """A rounding-sized change is no move (kept joints come back rounded to 1/1000 px); a
    joint moved away from its GT is one joint farther, in its error type's row and figure."""
    coco = trained["train"]
    entries = gt_results(coco)
    rounded = [{**e, "keypoints": (np.asarray(e["keypoints"], float)
                                   + np.tile([4e-4, -4e-4, 0], len(e["keypoints"]) // 3)
                                   ).tolist()} for e in entries]
    still = refinement_analysis(coco, entries, rounded)
    assert still["overall"]["reduced"] == still["overall"]["increased"] == 0
    kpts = np.reshape(entries[0]["keypoints"], (-1, 3)).astype(float)
    joint = int(np.flatnonzero(kpts[:, 2] > 0)[0])
    kpts[joint, :2] += 6.0
    moved = refinement_analysis(coco, entries, [{**entries[0],
                                                 "keypoints": kpts.ravel().tolist()},
                                                *entries[1:]])
    good = moved["by_error_type"]["good"]
    assert good["increased"] == pytest.approx(1 / good["joints"], abs=1e-4)
    assert good["ks_after"] < good["ks_before"] and good["reduced"] == 0
    plot_refinement({"det": moved, "gt": still}, tmp_path / "errors.png")
    assert (tmp_path / "errors.png").read_bytes()[:4] == b"\x89PNG"


def test_error_mix_of_results(trained: dict) -> None:
    coco = trained["train"]
    entries = gt_results(coco)
    mix = error_mix(coco, entries)
    assert mix["matched_poses"] == len(entries) and mix["shares"]["good"] == 1.0
    assert mix["joints"] == sum(int((np.reshape(e["keypoints"], (-1, 3))[:, 2] > 0).sum())
                                for e in entries)
    # a left wrist moved onto the right wrist of its own person: an inversion, upper body
    person = next(i for i, e in enumerate(entries)
                  if (np.reshape(e["keypoints"], (-1, 3))[[9, 10], 2] > 0).all()
                  and np.ptp(np.reshape(e["keypoints"], (-1, 3))[[9, 10], 0]) > 20)
    kpts = np.reshape(entries[person]["keypoints"], (-1, 3)).astype(float)
    kpts[9, :2] = kpts[10, :2]
    moved = [*entries[:person], {**entries[person], "keypoints": kpts.ravel().tolist()},
             *entries[person + 1:]]
    mix = error_mix(coco, moved)
    assert mix["counts"]["inversion"] == 1 and mix["by_group"]["upper"][2] > 0
    assert mix["by_group"]["face"][2] == 0
    assert all(sum(row) == pytest.approx(1.0) for row in mix["by_group"].values())


# --------------------------------------------------------------------------- the HRNet refiner


class EchoHRNet(PoseFixHRNet):
    """A PoseFixHRNet that returns unbiased Gaussians at its input pose maps' peaks: refining
    must then give back the input poses, through crop, heatmap and decoding."""

    sigma = 1.0

    def forward(self, image: torch.Tensor, pose_maps: torch.Tensor) -> torch.Tensor:
        n, j, h, w = pose_maps.shape
        flat = pose_maps.reshape(n, j, h * w).argmax(2)
        peak = torch.stack([flat % w, flat // w], dim=2).float() / self.stride
        maps, _ = gaussian_targets(peak, torch.ones(n, j), h // 4, w // 4, self.sigma)
        return maps


def test_hrnet_refiner_starts_as_hrnet_and_decodes_like_the_pose_models(trained: dict,
                                                                        tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = PoseFixHRNet(17, 8, (1, 1, 1), 1).eval()
    image = torch.randn(2, 3, 64, 48)
    with torch.no_grad():  # the zero-initialised pose block: the pose input changes nothing
        torch.testing.assert_close(net(image, torch.rand(2, 17, 64, 48)),
                                   net.backbone(image))
    target = torch.tensor([[[3.0, 4.0], [20.0, 1.0]]])
    maps, ok = gaussian_targets(target, torch.ones(1, 2), 16, 12, 1.5)
    assert ok.tolist() == [[1.0, 0.0]] and maps[0, 0, 4, 3] == 1.0
    loss, dist = heatmap_loss(maps, target, torch.ones(1, 2), 1.5)
    assert float(loss) == 0.0 and float(dist) == 0.0
    # the refine path: crops, heatmaps and DARK decoding give back the input poses
    coco, rt = trained["train"], trained["rt"]
    params = PosefixParams(backbone="hrnet", input_width=48, input_height=64, batch_size=8)
    config = {"backbone": "hrnet", "num_joints": 17, "sigma": EchoHRNet.sigma,
              "keypoint_names": list(coco.category["keypoints"]),
              "hrnet": {"width": 8, "modules": [1, 1, 1], "blocks": 1},
              **{k: getattr(params, k) for k in ("input_width", "input_height", "pose_sigma",
                                                "box_extent", "min_box", "box_padding")}}
    entries = []  # GT poses with every joint placed (as a pose model's), unlabeled ones at the
    for e in gt_results(coco):  # mean of the labeled ones, so that the crops fit the person
        kpts = np.reshape(e["keypoints"], (-1, 3)).astype(float)
        kpts[kpts[:, 2] == 0, :2] = kpts[kpts[:, 2] > 0, :2].mean(0)
        entries.append({**e, "keypoints": kpts.ravel().tolist()})
    echo = EchoHRNet(17, 8, (1, 1, 1), 1).eval()
    for decoder in ("hrnet", "dark"):
        out = refine_results(echo, config, coco, entries, params, rt, decoder=decoder,
                             progress=False)
        errors = []
        for before, after in zip(entries, out.refined, strict=True):
            a = np.reshape(before["keypoints"], (-1, 3))
            b = np.reshape(after["keypoints"], (-1, 3))
            px = pose_crop(a[:, :2], params)[1][0] / params.input_width  # image px / input px
            errors.append(np.abs(a[:, :2] - b[:, :2]).max(1) / px)
        errors = np.concatenate(errors)  # in input pixels
        if decoder == "hrnet":  # the peaks' grid (0.5 px) plus the quarter step (1 px)
            assert errors.max() <= 1.5 + 1e-6, errors.max()
        else:  # DARK: sub-pixel, but smoothing with mirrored borders bends border joints
            assert np.median(errors) <= 0.5 and np.mean(errors <= 1.5) > 0.9, errors
    # keep_ratio: where the refiner's map peaks at the input joint, the joint is kept exactly
    kept = refine_results(echo, config, coco, entries, dataclasses.replace(params, keep_ratio=0.9),
                          rt, progress=False)
    assert kept.stats["joints_kept"] > 0.9 * 17 * len(entries)
    same = [np.array_equal(np.round(np.reshape(a["keypoints"], (-1, 3))[:, :2], 3),
                           np.reshape(b["keypoints"], (-1, 3))[:, :2])
            for a, b in zip(entries, kept.refined, strict=True)]
    assert np.mean(same) > 0.3 and kept.stats["joints_kept"] < 17 * len(entries) + 1
    # brief training from a saved HRNet: the stage's path, then a saved folder refines
    hrnet = HRNet(8, 17, (1, 1, 1), 1, "he")
    torch.save(hrnet.state_dict(), tmp_path / "hrnet.pt")
    start = HRNetStart(tmp_path / "hrnet.pt", 8, (1, 1, 1), 1, 3.0)
    tp = dataclasses.replace(trained["params"].train, epochs=1)
    result = train_posefix(coco, None, dataclasses.replace(params, train=tp), rt, None,
                           hrnet=start, progress=False)
    assert isinstance(result.model, PoseFixHRNet) and result.config["sigma"] == 0.75
    assert np.isfinite(result.log[0]["train_loss"]) and "train_l1" in result.log[0]
    save_network(tmp_path / "model", result.model, result.config)
    net, config = load_model(tmp_path / "model")
    assert isinstance(net, PoseFixHRNet)
    refined = refine_results(net, config, coco, entries[:3], params, rt, progress=False)
    assert len(refined.refined) == 3
    with pytest.raises(ConfigError, match="needs the pretrained HRNet"):
        train_posefix(coco, None, params, rt, None, progress=False)


def test_training_resumes_to_the_same_weights(trained: dict) -> None:
    root, params = trained["root"], trained["params"]

    def stop_after_first(epoch: int, row: dict) -> None:
        if epoch == 0:
            raise KeyboardInterrupt

    ckpt, rt = root / "resume" / CHECKPOINT, trained["rt"]
    with pytest.raises(KeyboardInterrupt):
        train_posefix(trained["train"], trained["val"], params, rt, ckpt, progress=False,
                      on_epoch_end=stop_after_first)
    resumed = train_posefix(trained["train"], trained["val"], params, rt, ckpt, progress=False)
    assert resumed.resumed_epochs == 1
    full = trained["result"].model.state_dict()
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, full[name], msg=name)
    assert [r["train_loss"] for r in resumed.log] == pytest.approx(
        [r["train_loss"] for r in trained["result"].log])


def test_refine_stage_writes_results_and_rejects_unknown_images(
        trained: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, coco = trained["root"], trained["val"]
    params = yaml.safe_load((ROOT / "params.smoke.yaml").read_text())
    params["posefix"].update(flip_test=True, min_score=0.5)
    params["posefix"]["train"].update(workers=0)
    params["runtime"].update(device="cpu", threads=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    good = gt_results(coco)
    good.append({**good[0], "score": 0.25})  # under min_score: passed through
    (tmp_path / "in.json").write_text(json.dumps(good))
    out, details = tmp_path / "results" / "fixed.json", tmp_path / "posefix.json"
    argv = ["refine.py", "--params", str(tmp_path / "params.yaml"), "--dataset",
            str(root / "dataset"), "--model", str(root / "model"), "--input",
            f"det:{tmp_path / 'in.json'}={out}", "--details", str(details)]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ROOT / "stages" / "refine.py"), run_name="__main__")
    results = json.loads(out.read_text())
    assert 0 < len(results) <= len(good) and {r["image_id"] for r in results} <= set(coco.images)
    report = json.loads(details.read_text())["det"]
    assert report["refined"] == len(good) - 1 and set(report["by_error_type"]) == set(
        ERROR_TYPES)
    # an unknown image id: one clear error naming file and entry; earlier outputs untouched
    bad = [*good[:2], {**good[0], "image_id": 987654}]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"bad\.json: entry 2 refers to unknown image id 987654"):
        read_pose_results(tmp_path / "bad.json", coco)
    argv[argv.index(f"det:{tmp_path / 'in.json'}={out}")] = f"det:{tmp_path / 'bad.json'}={out}"
    before = out.read_text()
    with pytest.raises(SystemExit):
        runpy.run_path(str(ROOT / "stages" / "refine.py"), run_name="__main__")
    assert out.read_text() == before
    (tmp_path / "short.json").write_text(json.dumps([{**good[0], "keypoints": [1, 2, 3]}]))
    with pytest.raises(DataError, match="entry 0 needs 51 finite keypoint values"):
        read_pose_results(tmp_path / "short.json", coco)
