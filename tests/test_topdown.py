"""Crops, targets, flips and instance cues of the top-down sample layer."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hintpose.config import PoseDataParams
from hintpose.data.coco import load_coco
from hintpose.data.transforms import (
    affine_matrix,
    box_to_center_size,
    flip_heatmaps_back,
    flip_keypoints,
    flip_pairs_from_names,
    half_body_crop,
    transform_points,
    upper_body_mask,
)
from hintpose.topdown.codec import HeatmapCodec, decode
from hintpose.topdown.samples import (
    Instance,
    TopDownDataset,
    collate,
    overlapping_boxes,
    training_instances,
)

NAMES = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
         "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
         "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]


def person_keypoints() -> np.ndarray:
    """A standing person in a 160x120 image; right ear unlabeled."""
    xy = [(80, 20), (84, 17), (76, 17), (88, 19), (0, 0), (92, 35), (68, 35), (96, 52), (64, 52),
          (98, 68), (62, 68), (88, 70), (72, 70), (90, 92), (70, 92), (91, 112), (69, 112)]
    k = np.array([(x, y, 2) for x, y in xy], dtype=np.float64)
    k[4, 2] = 0
    return k


@pytest.fixture
def coco(tmp_path: Path):
    image = np.full((120, 160, 3), 90, np.uint8)
    cv2.circle(image, (80, 60), 30, (200, 50, 50), -1)
    cv2.imwrite(str(tmp_path / "p.png"), image)
    kpts = person_keypoints()
    data = {
        "images": [{"id": 5, "file_name": "p.png", "width": 160, "height": 120}],
        "annotations": [{"id": 1, "image_id": 5, "category_id": 1, "bbox": [60, 15, 40, 100],
                         "area": 2000, "iscrowd": 0, "keypoints": kpts.ravel().tolist(),
                         "num_keypoints": 16}],
        "categories": [{"id": 1, "name": "person", "keypoints": NAMES, "skeleton": []}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return load_coco(tmp_path / "ann.json", tmp_path, "decode")


def test_box_to_center_size_fixes_aspect_and_pads() -> None:
    center, size = box_to_center_size([10, 20, 40, 100], 0.75, 1.25)
    np.testing.assert_allclose(center, [30, 70])
    np.testing.assert_allclose(size, [75 * 1.25, 100 * 1.25])


@pytest.mark.parametrize("rotation", [0.0, 30.0, -75.0])
def test_crop_round_trip_is_exact(rotation: float) -> None:
    center, size = np.array([70.0, 50.0]), np.array([60.0, 80.0])
    fwd = affine_matrix(center, size, rotation, (48, 64))
    inv = affine_matrix(center, size, rotation, (48, 64), inverse=True)
    pts = np.random.default_rng(0).uniform(0, 150, (20, 2))
    np.testing.assert_allclose(transform_points(transform_points(pts, fwd), inv), pts, atol=1e-9)
    np.testing.assert_allclose(transform_points(center, fwd), [24, 32], atol=1e-9)


def test_rotation_sign_matches_hrnet() -> None:
    # HRNet: a point above the center, rotated by +90 degrees, comes out on the left
    m = affine_matrix(np.array([50.0, 50.0]), np.array([40.0, 40.0]), 90.0, (40, 40))
    np.testing.assert_allclose(transform_points(np.array([50.0, 40.0]), m), [10, 20], atol=1e-9)


def test_keypoint_heatmap_image_round_trip_within_half_pixel() -> None:
    """Keypoints -> crop -> Gaussian target -> decode -> image: within half a heatmap pixel."""
    codec = HeatmapCodec.for_input(96, 128, 2.0)
    rng = np.random.default_rng(1)
    center, size = np.array([200.0, 150.0]), np.array([120.0, 160.0])
    pts = center + rng.uniform(-50, 50, (17, 2))
    crop = transform_points(pts, affine_matrix(center, size, 0.0, (96, 128)))
    target, weight = codec.encode(crop, np.ones(17, bool))
    assert weight.min() == 1 and target.max() == pytest.approx(1.0)
    coords, maxvals = decode(target[None], center[None], size[None])
    heatmap_px = size[0] / codec.heatmap_size[0]  # image pixels per heatmap pixel
    assert np.abs(coords[0] - pts).max() <= 0.5 * heatmap_px + 1e-4
    assert np.all(maxvals == 1.0)


def test_target_weight_zero_for_unlabeled_and_far_outside() -> None:
    codec = HeatmapCodec.for_input(48, 64, 2.0)
    target, weight = codec.encode(np.array([[20.0, 30.0], [20.0, 30.0], [500.0, 30.0]]),
                                  np.array([True, False, True]))
    assert weight[:, 0].tolist() == [1.0, 0.0, 0.0]
    assert target[1].max() == 0 and target[2].max() == 0
    assert codec.sigma == pytest.approx(0.5)  # 2 at a 64-high heatmap, scaled to 16


def test_flip_twice_is_identity_and_swaps_sides() -> None:
    kpts = person_keypoints()
    pairs = flip_pairs_from_names(NAMES)
    assert (5, 6) in pairs and (15, 16) in pairs and len(pairs) == 8
    once = flip_keypoints(kpts, 160, pairs)
    np.testing.assert_array_equal(flip_keypoints(once, 160, pairs), kpts)
    # the left wrist of the mirrored person is where the right wrist was, mirrored
    assert once[9, 0] == 160 - 1 - kpts[10, 0] and once[9, 1] == kpts[10, 1]
    assert once[3, 2] == 0 and once[3, 0] == 0  # unlabeled right ear became the left ear


def test_flip_back_heatmaps_align_with_unflipped() -> None:
    codec = HeatmapCodec.for_input(48, 64, 2.0)
    pairs = flip_pairs_from_names(NAMES)
    pts = np.tile([[20.0, 24.0]], (17, 1))
    pts[9] = [32.0, 40.0]  # left wrist somewhere else
    direct, _ = codec.encode(pts, np.ones(17, bool))
    mirrored = flip_keypoints(np.c_[pts, np.full(17, 2.0)], 48, pairs)[:, :2]
    on_flipped, _ = codec.encode(mirrored, np.ones(17, bool))
    back = flip_heatmaps_back(torch.from_numpy(on_flipped)[None], pairs)[0].numpy()
    for j in range(17):
        assert np.unravel_index(back[j].argmax(), back[j].shape) == np.unravel_index(
            direct[j].argmax(), direct[j].shape)
    twice = flip_heatmaps_back(flip_heatmaps_back(torch.from_numpy(direct)[None], pairs, False),
                               pairs, False)
    assert torch.equal(twice[0], torch.from_numpy(direct))


def test_half_body_uses_upper_or_lower_joints() -> None:
    kpts = person_keypoints()
    upper = upper_body_mask(NAMES)
    assert upper[:11].all() and not upper[11:].any()
    center, size = half_body_crop(kpts, upper, 0.75, np.random.default_rng(3))
    assert size[0] / size[1] == pytest.approx(0.75)
    assert 15 < center[1] < 110


def test_training_sample_shapes_and_determinism(coco) -> None:
    # HRNet's official augmentation (every random draw: scale, rotation, half body, flip);
    # one sample per item (paired_cues off)
    params = PoseDataParams(input_width=48, input_height=64, scale_factor=0.35,
                            rotation_factor=45.0, rotation_prob=0.6, half_body_prob=0.3)
    ds = TopDownDataset(coco, training_instances(coco), params, train=True, seed=7, cue="point")
    sample = ds[0]
    assert set(sample) == {"image", "target", "target_weight", "cue", "meta"}
    img, target, weight, cue, meta = (sample[k] for k in ("image", "target", "target_weight",
                                                           "cue", "meta"))
    assert img.shape == (3, 64, 48) and target.shape == (17, 16, 12) and weight.shape == (17, 1)
    assert cue.shape == (1, 64, 48) and cue.max() <= 1.0
    ear = 3 if meta["flip"] else 4  # the unlabeled right ear (mirrored onto the left if flipped)
    assert weight[ear, 0] == 0 and target[ear].max() == 0
    again = ds[0]
    assert torch.equal(img, again["image"]) and torch.equal(cue, again["cue"])
    ds.set_epoch(1)
    assert not torch.equal(img, ds[0]["image"])
    # a model without a cue input gets no cue (nor a cue point in the meta)
    plain = TopDownDataset(coco, training_instances(coco), params, train=True, seed=7)[0]
    assert set(plain) == {"image", "target", "target_weight", "meta"} and "cue" not in plain["meta"]


def test_training_cue_lands_on_a_labeled_joint(coco) -> None:
    params = PoseDataParams(input_width=48, input_height=64, cue_jitter=0.0, rotation_prob=0.0,
                            half_body_prob=0.0, flip=False, scale_factor=0.0)
    ds = TopDownDataset(coco, training_instances(coco), params, train=True, seed=0, cue="point")
    inst = ds.instances[0]
    center, size = box_to_center_size(inst.bbox, 0.75, params.box_padding)
    joints = transform_points(inst.keypoints[:, :2], affine_matrix(center, size, 0, (48, 64)))
    seen = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        sample = ds[0]
        weight, cue, meta = sample["target_weight"], sample["cue"], sample["meta"]
        d = np.linalg.norm(joints - meta["cue"], axis=1)
        j = int(d.argmin())
        assert d[j] < 1e-4 and weight[j, 0] == 1
        peak = np.unravel_index(cue[0].numpy().argmax(), cue[0].shape)
        assert abs(peak[1] - meta["cue"][0]) <= 0.5 and abs(peak[0] - meta["cue"][1]) <= 0.5
        seen.add(j)
    assert len(seen) > 3  # the joint is drawn at random


@pytest.fixture
def pair(tmp_path: Path):
    """Two overlapping persons (the second 16 px to the right) and a far third one."""
    cv2.imwrite(str(tmp_path / "p.png"), np.full((120, 320, 3), 90, np.uint8))
    base = person_keypoints()
    anns = []
    for i, dx in enumerate((0, 16, 200)):
        k = base.copy()
        k[:, 0] += dx * (k[:, 2] > 0)
        anns.append({"id": i + 1, "image_id": 5, "category_id": 1, "bbox": [60 + dx, 15, 40, 100],
                     "area": 2000, "iscrowd": 0, "keypoints": k.ravel().tolist(),
                     "num_keypoints": 16})
    data = {"images": [{"id": 5, "file_name": "p.png", "width": 320, "height": 120}],
            "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": NAMES, "skeleton": []}]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return load_coco(tmp_path / "ann.json", tmp_path, "decode")


def test_overlapping_boxes_are_the_other_persons_near_each_one(pair) -> None:
    instances = training_instances(pair)
    boxes = overlapping_boxes(pair, instances)
    assert boxes[0] == [instances[1].bbox] and boxes[1] == [instances[0].bbox]
    assert boxes[2] == []


def test_other_box_frames_the_crop_but_target_and_cue_stay(pair) -> None:
    """With other_box_prob 1 an instance-cue sample is cropped around the neighbour's box
    while its targets and cue are the first person's joints; other models ignore it."""
    params = PoseDataParams(input_width=48, input_height=64, cue_jitter=0.0, rotation_prob=0.0,
                            half_body_prob=0.0, flip=False, scale_factor=0.0, other_box_prob=1.0)
    instances = training_instances(pair)
    cue_ds = TopDownDataset(pair, instances, params, train=True, seed=0, cue="point")
    plain = TopDownDataset(pair, instances, params, train=True, seed=0)
    own_center, size = box_to_center_size(instances[0].bbox, 0.75, params.box_padding)
    other_center, _ = box_to_center_size(instances[1].bbox, 0.75, params.box_padding)
    sample = cue_ds[0]
    target, weight, meta = sample["target"], sample["target_weight"], sample["meta"]
    np.testing.assert_allclose(meta["center"], other_center)
    np.testing.assert_allclose(plain[0]["meta"]["center"], own_center)
    m = affine_matrix(other_center, size, 0, (48, 64))
    joints = transform_points(instances[0].keypoints[:, :2], m)
    assert np.linalg.norm(joints - meta["cue"], axis=1).min() < 1e-4  # the first person's
    expected, _ = cue_ds.codec.encode(joints, instances[0].keypoints[:, 2] > 0)
    np.testing.assert_allclose(target.numpy(), expected, atol=1e-6)
    assert weight.sum() > 10
    # The far third person has no overlapping box: its own box frames it.
    far_center, _ = box_to_center_size(instances[2].bbox, 0.75, params.box_padding)
    np.testing.assert_allclose(cue_ds[2]["meta"]["center"], far_center)


def test_paired_cues_give_two_targets_for_the_same_pixels(pair) -> None:
    """paired (a schedule's paired_cues): an instance-cue item is the same crop twice, cued on
    its person (target: that person) and on the nearest neighbour (target: the neighbour,
    joints outside the crop weighted 0); the far third person has no neighbour with enough
    joints in its crop, so both halves are its own. A batch of paired items concatenates the
    pairs."""
    from hintpose.topdown.samples import nearest_neighbours

    params = PoseDataParams(input_width=48, input_height=64, cue_jitter=0.0, rotation_prob=0.0,
                            half_body_prob=0.0, flip=False, scale_factor=0.0)
    instances = training_instances(pair)
    near = nearest_neighbours(pair, instances)
    np.testing.assert_array_equal(near[0], instances[1].keypoints)
    np.testing.assert_array_equal(near[2], instances[1].keypoints)  # nearest centre, far away
    ds = TopDownDataset(pair, instances, params, train=True, seed=0, cue="point", paired=True)
    first, second = ds[0]
    image, target, weight, cue = (torch.stack([first[k], second[k]])
                                  for k in ("image", "target", "target_weight", "cue"))
    assert image.shape == (2, 3, 64, 48) and target.shape == (2, 17, 16, 12)
    assert torch.equal(image[0], image[1])
    m = affine_matrix(*box_to_center_size(instances[0].bbox, 0.75, 1.25), 0, (48, 64))
    for half, person in ((0, instances[0]), (1, instances[1])):
        joints = transform_points(person.keypoints[:, :2], m)
        inside = (person.keypoints[:, 2] > 0) & (joints >= 0).all(1) & (joints[:, 0] < 48) \
            & (joints[:, 1] < 64)
        expected, expected_w = ds.codec.encode(joints, inside)
        np.testing.assert_allclose(target[half].numpy(), expected, atol=1e-6)
        np.testing.assert_array_equal(weight[half].numpy(), expected_w)
        peak = np.unravel_index(cue[half, 0].numpy().argmax(), (64, 48))
        assert np.abs(joints[inside] - peak[::-1]).sum(1).min() <= 1.0  # cued on that person
    assert not torch.equal(target[0], target[1])
    far = ds[2]  # the far person: its own target twice
    assert torch.equal(far[0]["target"], far[1]["target"])
    plain = TopDownDataset(pair, instances, params, train=True, seed=0)  # a model without cue
    assert isinstance(plain[0], dict) and plain[0]["image"].shape == (3, 64, 48)
    batch = collate([ds[0], ds[1]])
    assert set(batch) == {"image", "target", "target_weight", "cue"}
    assert batch["image"].shape == (4, 3, 64, 48) and batch["cue"].shape == (4, 1, 64, 48)
    assert batch["target"].shape == (4, 17, 16, 12) and batch["target_weight"].shape == (4, 17, 1)
    # the pairs' rows in order a0, b0, a1, b1
    rows = [s for item in (ds[0], ds[1]) for s in item]
    for i, s in enumerate(rows):
        assert torch.equal(batch["target"][i], s["target"]) and torch.equal(batch["cue"][i],
                                                                            s["cue"])
    assert "cue" not in collate([plain[0], plain[1]])


def test_inference_cue_on_given_point(coco) -> None:
    params = PoseDataParams(input_width=48, input_height=64)
    kpts = person_keypoints()
    target_joint = kpts[9, :2]
    inst = Instance(5, (60.0, 15.0, 40.0, 100.0), 0.9, cue=tuple(target_joint))
    ds = TopDownDataset(coco, [inst, replace(inst, cue=None)], params, train=False, cue="point")
    cue, meta = ds[0]["cue"], ds[0]["meta"]
    center, size = box_to_center_size(inst.bbox, 0.75, params.box_padding)
    expected = transform_points(target_joint, affine_matrix(center, size, 0, (48, 64)))
    np.testing.assert_allclose(meta["cue"], expected, atol=1e-4)
    peak = np.unravel_index(cue[0].numpy().argmax(), cue[0].shape)
    assert np.hypot(peak[1] - expected[0], peak[0] - expected[1]) <= 0.75
    np.testing.assert_allclose(ds[1]["meta"]["cue"], [24, 32])  # no cue: the crop center
    assert meta["score"] == pytest.approx(0.9) and meta["image_id"] == 5


def test_center_jitter_moves_training_crops_like_a_detector(pair) -> None:
    """center_jitter (a schedule's): training crops move off the box centre by up to 2 std
    (box widths, heights), every model alike; 0, 0 (the pretraining's) keeps HRNet's centred
    crops, and so does every crop that is not a training crop."""
    still = PoseDataParams(input_width=48, input_height=64, rotation_prob=0.0, half_body_prob=0.0,
                           flip=False, scale_factor=0.0)
    instances = training_instances(pair)
    box = instances[0].bbox
    own, _ = box_to_center_size(box, 0.75, still.box_padding)
    offsets = []
    for epoch in range(30):
        ds = TopDownDataset(pair, instances, still, train=True, seed=0, center_jitter=(0.2, 0.1))
        ds.set_epoch(epoch)
        offsets.append((ds[0]["meta"]["center"] - own) / np.asarray(box[2:4]))
        fixed = TopDownDataset(pair, instances, still, train=True, seed=0)
        fixed.set_epoch(epoch)
        np.testing.assert_allclose(fixed[0]["meta"]["center"], own)
        evaluated = TopDownDataset(pair, instances, still, train=False, center_jitter=(0.2, 0.1))
        np.testing.assert_allclose(evaluated[0]["meta"]["center"], own)
    off = np.abs(np.array(offsets))
    assert off[:, 0].max() <= 0.4 + 1e-6 and off[:, 1].max() <= 0.2 + 1e-6
    assert off[:, 0].mean() > 0.05 and off[:, 1].mean() > 0.02


def test_pair_probability_and_neighbour_weight(pair) -> None:
    """pair_prob 0: the second sample of a pair is the target again; neighbour_weight scales
    the neighbour's joint weights while its cue still lands on the neighbour."""
    base = PoseDataParams(input_width=48, input_height=64, cue_jitter=0.0, rotation_prob=0.0,
                          half_body_prob=0.0, flip=False, scale_factor=0.0)
    instances = training_instances(pair)
    never = TopDownDataset(pair, instances, replace(base, pair_prob=0.0), train=True, cue="point",
                           paired=True)
    first, second = never[0]
    assert torch.equal(first["target"], second["target"])
    full = TopDownDataset(pair, instances, base, train=True, cue="point", paired=True)[0][1]
    half = TopDownDataset(pair, instances, replace(base, neighbour_weight=0.5), train=True,
                          cue="point", paired=True)[0][1]
    assert torch.equal(full["target"], half["target"])
    np.testing.assert_allclose(half["target_weight"].numpy(), full["target_weight"].numpy() * 0.5)
    np.testing.assert_allclose(half["meta"]["cue"], full["meta"]["cue"])
    zero = TopDownDataset(pair, instances, replace(base, neighbour_weight=0.0), train=True,
                          cue="point", paired=True)[0][1]
    assert zero["target_weight"].sum() == 0
    np.testing.assert_allclose(zero["meta"]["cue"], full["meta"]["cue"])  # still cued there


def test_recurrent_samples_carry_their_feedback_corruption(pair) -> None:
    """feedback_corrupt: a recurrent model's training samples draw which fed-back joints are
    moved (kind 1) or swapped with their mirror twin (kind 2, only joints that have one),
    deterministically; other models, one-hop models and inference draw nothing."""
    params = PoseDataParams(input_width=48, input_height=64,
                            feedback_corrupt=0.5, feedback_shift=(2.0, 3.0))
    instances = training_instances(pair)
    ds = TopDownDataset(pair, instances, params, train=True, seed=3, hops=3)
    plans = torch.stack([ds[i]["feedback"] for i in range(3)])
    assert plans.shape == (3, 17, 3)
    assert torch.equal(plans, torch.stack([ds[i]["feedback"] for i in range(3)]))
    kind, radius = plans[..., 0], plans[..., 1:].norm(dim=-1)
    assert {0.0, 1.0, 2.0} <= set(kind.unique().tolist())
    assert (kind[:, 0] != 2).all()  # the nose has no twin
    assert ((radius[kind == 1] >= 2.0 - 1e-5) & (radius[kind == 1] <= 3.0 + 1e-5)).all()
    for other in (TopDownDataset(pair, instances, params, train=True, hops=1),
                  TopDownDataset(pair, instances, params, train=False, hops=3),
                  TopDownDataset(pair, instances, replace(params, feedback_corrupt=0.0),
                                 train=True, hops=3)):
        assert "feedback" not in other[0]
    assert collate([ds[0], ds[1]])["feedback"].shape == (2, 17, 3)
