"""Rescoring and OKS-NMS agree with HRNet's per-pose loop, tie-breaking included."""

from __future__ import annotations

import numpy as np
import pytest

from hintpose.data.keypoints import COCO_SIGMAS
from hintpose.topdown.postprocess import (
    coco_oks,
    keypoint_similarity,
    nms_per_image,
    oks_nms,
    rescore,
    soft_oks_nms,
)


def loop_oks(g, d, area_g, area_d, sigmas):
    """HRNet's oks_iou written as a plain loop over joints (the reference behaviour)."""
    var = (sigmas * 2) ** 2
    total = 0.0
    for j in range(len(g)):
        dx, dy = d[j, 0] - g[j, 0], d[j, 1] - g[j, 1]
        e = (dx * dx + dy * dy) / var[j] / ((area_g + area_d) / 2 + np.spacing(1)) / 2
        total += np.exp(-e)
    return total / len(g)


def loop_nms(kpts, scores, areas, thr):
    order = list(np.argsort(scores)[::-1])
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if loop_oks(kpts[i], kpts[j], areas[i], areas[j], COCO_SIGMAS)
                 <= thr]
    return keep


def cluster_poses(rng, n=40):
    base = rng.uniform(0, 200, (4, 17, 2))
    kpts = np.concatenate([base[rng.integers(0, 4, n)] + rng.normal(0, 3, (n, 17, 2)),
                           rng.uniform(0, 1, (n, 17, 1))], axis=2)
    scores = np.round(rng.uniform(0, 1, n), 1)  # many ties on purpose
    areas = rng.uniform(500, 5000, n)
    return kpts, scores, areas


@pytest.mark.parametrize("seed", range(5))
def test_oks_nms_matches_reference_loop(seed: int) -> None:
    kpts, scores, areas = cluster_poses(np.random.default_rng(seed))
    for thr in (0.5, 0.9):
        assert oks_nms(kpts, scores, areas, thr).tolist() == loop_nms(kpts, scores, areas, thr)


def test_known_three_pose_case() -> None:
    kpts = np.stack([np.tile([10, 10, 0.9], (17, 1)), np.tile([10, 10, 0.9], (17, 1)),
                     np.tile([100, 100, 0.9], (17, 1))]).astype(float)
    scores, areas = np.array([0.9, 0.4, 0.7]), np.full(3, 100.0)
    assert oks_nms(kpts, scores, areas, 0.9).tolist() == [0, 2]
    # soft NMS keeps the duplicate, ranked after the far pose (its score decays to 0.4*e^-1.11)
    assert soft_oks_nms(kpts, scores, areas, 0.9).tolist() == [0, 2, 1]


def test_soft_nms_keeps_at_most_max_dets() -> None:
    kpts, scores, areas = cluster_poses(np.random.default_rng(9), n=60)
    keep = soft_oks_nms(kpts, scores, areas)
    assert len(keep) == 20 and len(set(keep.tolist())) == 20
    assert keep[0] == np.argsort(scores)[::-1][0]


def test_rescore_as_hrnet() -> None:
    kpts = np.zeros((3, 17, 3))
    kpts[0, :, 2] = 0.5
    kpts[1, :4, 2] = [0.9, 0.1, 0.3, 0.2]  # only 0.9 and 0.3 exceed 0.2
    scores = rescore(kpts, np.array([0.8, 1.0, 1.0]))
    np.testing.assert_allclose(scores, [0.4, 0.6, 0.0])


def test_other_joint_counts_need_sigmas() -> None:
    kpts = np.zeros((2, 14, 3))
    with pytest.raises(ValueError, match="no default OKS sigmas for 14 joints"):
        oks_nms(kpts, np.ones(2), np.ones(2))
    assert len(oks_nms(kpts, np.ones(2), np.ones(2), sigmas=np.full(14, 0.08))) == 1


def test_keypoint_similarity_and_coco_oks_as_cocoeval() -> None:
    """COCOeval.computeOks: e = d^2 / (2 sigma)^2 / (area + eps) / 2, mean of exp(-e) over the
    GT's labeled joints."""
    rng = np.random.default_rng(3)
    gt = np.concatenate([rng.uniform(0, 100, (17, 2)), np.ones((17, 1))], axis=1)
    gt[[0, 4, 9], 2] = 0  # unlabeled joints do not count
    preds = gt[None, :, :2] + rng.normal(0, 4, (3, 17, 2))
    area = 2500.0
    ks = keypoint_similarity(((preds - gt[None, :, :2]) ** 2).sum(-1), area, COCO_SIGMAS)
    assert ks.shape == (3, 17) and ((ks > 0) & (ks <= 1)).all()
    for m in range(3):
        for j in range(17):
            d2 = ((preds[m, j] - gt[j, :2]) ** 2).sum()
            e = d2 / (2 * COCO_SIGMAS[j]) ** 2 / (area + np.spacing(1)) / 2
            assert ks[m, j] == pytest.approx(np.exp(-e), rel=1e-12)
    labeled = gt[:, 2] > 0
    np.testing.assert_allclose(coco_oks(gt, preds, area), ks[:, labeled].mean(axis=1),
                               rtol=1e-12)
    assert coco_oks(gt, gt[None, :, :2], area).tolist() == [1.0]  # a perfect pose
    assert coco_oks(np.zeros((17, 3)), preds, area).tolist() == [0.0, 0.0, 0.0]


def test_nms_per_image_never_suppresses_across_images() -> None:
    """Two images each holding the same duplicated pose: each image keeps its best copy; the
    indices come image by image in increasing id order, best first within an image."""
    pose = np.tile([50.0, 50.0, 0.9], (17, 1))
    far = np.tile([150.0, 150.0, 0.9], (17, 1))
    kpts = np.stack([pose, pose, far, pose, pose])
    scores = np.array([0.5, 0.9, 0.3, 0.8, 0.2])
    areas = np.full(5, 400.0)
    ids = [7, 7, 7, 3, 3]
    assert nms_per_image(kpts, scores, areas, ids, thr=0.9) == [3, 1, 2]
    # soft NMS keeps the duplicates after the others, decayed
    assert nms_per_image(kpts, scores, areas, ids, thr=0.9, soft=True) == [3, 4, 1, 2, 0]
    # a single image is plain oks_nms
    assert nms_per_image(kpts, scores, areas, [1] * 5) == oks_nms(kpts, scores, areas).tolist()


def test_neighbour_poses_of_a_box_are_decayed_and_its_best_fit_kept() -> None:
    """Cue-aware scoring: per box, the pose whose confident joints span the box best keeps
    its score, the other cues' poses are multiplied by the decay; decay 1 changes nothing."""
    from hintpose.topdown.postprocess import decay_neighbour_poses

    def pose(x0: float, y0: float, w: float, h: float) -> np.ndarray:
        k = np.zeros((17, 3))
        k[:, 0] = np.linspace(x0, x0 + w, 17)
        k[:, 1] = np.linspace(y0, y0 + h, 17)
        k[:, 2] = 0.9
        return k

    kpts = np.stack([pose(40, 0, 40, 100),   # box 0, half outside: a neighbour
                     pose(0, 0, 50, 100),    # box 0, fits it: the primary pose
                     pose(0, 0, 50, 100),    # box 1, alone
                     pose(0, 0, 5, 5)])      # box 2, low confidence: no extent
    kpts[3, :, 2] = 0.1
    scores = np.array([0.8, 0.6, 0.7, 0.5])
    boxes = np.array([[0, 0, 50, 100], [0, 0, 50, 100], [0, 0, 50, 100], [0, 0, 50, 100]])
    groups = np.array([0, 0, 1, 2])
    out = decay_neighbour_poses(kpts, scores, groups, boxes, 0.5)
    np.testing.assert_allclose(out, [0.4, 0.6, 0.7, 0.5])
    np.testing.assert_allclose(decay_neighbour_poses(kpts, scores, groups, boxes, 1.0), scores)
