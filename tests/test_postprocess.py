"""Rescoring and OKS-NMS agree with HRNet's per-pose loop, tie-breaking included."""

from __future__ import annotations

import numpy as np
import pytest

from hintpose.postprocess import COCO_SIGMAS, oks_nms, rescore, soft_oks_nms


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
