"""Heatmap codec: HRNet's decode details (argmax ties, quarter-pixel step, border rule, inverse
crop), unbiased targets and DARK's decoder."""

from __future__ import annotations

import numpy as np
import pytest

from hintpose.topdown.codec import HeatmapCodec, decode

CENTER = np.array([[100.0, 200.0]])
SIZE = np.array([[48.0, 64.0]])  # 4 image pixels per heatmap pixel on a 12 x 16 map


def one_map(points: dict[tuple[int, int], float]) -> np.ndarray:
    hm = np.zeros((1, 1, 16, 12), np.float32)
    for (y, x), v in points.items():
        hm[0, 0, y, x] = v
    return hm


def to_image(x: float, y: float) -> list[float]:
    return [100 + (x - 6) * 4, 200 + (y - 8) * 4]


def test_quarter_step_toward_larger_neighbour() -> None:
    coords, maxvals = decode(one_map({(5, 5): 1.0, (5, 6): 0.5, (4, 5): 0.2}), CENTER, SIZE)
    np.testing.assert_allclose(coords[0, 0], to_image(5.25, 4.75))
    assert maxvals[0, 0, 0] == 1.0


def test_no_step_on_the_border_rows_and_columns() -> None:
    for y, x in ((1, 5), (5, 1), (15, 5), (5, 11), (0, 3)):  # HRNet needs 1 < p < size - 1
        hm = one_map({(y, x): 1.0, (y, x + 1 if x < 11 else x - 1): 0.5})
        coords, _ = decode(hm, CENTER, SIZE)
        np.testing.assert_allclose(coords[0, 0], to_image(x, y))


def test_first_maximum_wins_ties_and_nonpositive_maps_go_to_origin() -> None:
    coords, _ = decode(one_map({(3, 4): 1.0, (9, 9): 1.0}), CENTER, SIZE)
    np.testing.assert_allclose(coords[0, 0], to_image(4, 3))
    coords, maxvals = decode(one_map({}) - 1.0, CENTER, SIZE)
    np.testing.assert_allclose(coords[0, 0], to_image(0, 0))
    assert maxvals[0, 0, 0] == -1.0


def test_batch_shapes() -> None:
    hm = np.random.default_rng(0).random((5, 17, 16, 12)).astype(np.float32)
    coords, maxvals = decode(hm, np.tile(CENTER, (5, 1)), np.tile(SIZE, (5, 1)))
    assert coords.shape == (5, 17, 2) and maxvals.shape == (5, 17, 1)


# --------------------------------------------------------------------------- DARK / unbiased


def test_unbiased_target_peaks_between_pixels_at_the_joint() -> None:
    """The unbiased target is the Gaussian of the joint's exact heatmap position: its peak lies
    between pixels (value < 1) and its weighted centroid is the joint; HRNet's is at the
    rounded pixel with value 1. Windows and weights stay the same."""
    joint = np.array([[4 * 5.3, 4 * 7.6]])  # heatmap (5.3, 7.6) at stride 4
    hrnet = HeatmapCodec((48, 64), (12, 16), 1.5).encode(joint, np.array([True]))
    unb = HeatmapCodec((48, 64), (12, 16), 1.5, "unbiased").encode(joint, np.array([True]))
    assert hrnet[0][0, 8, 5] == 1.0 and unb[0].max() < 1.0
    np.testing.assert_array_equal(hrnet[1], unb[1])
    np.testing.assert_array_equal(hrnet[0] > 0, unb[0] > 0)
    ys, xs = np.mgrid[0:16, 0:12]
    m = unb[0][0]
    centroid = (float((m * xs).sum() / m.sum()), float((m * ys).sum() / m.sum()))
    assert centroid == pytest.approx((5.3, 7.6), abs=0.02)


@pytest.mark.parametrize("sigma", [1.1, 2.0])
def test_dark_recovers_sub_pixel_joints_hrnet_rounds(sigma: float) -> None:
    """Decoding unbiased targets (joints at least 3 sigma from the map's border): DARK lands
    within 0.05 heatmap px of every joint, HRNet's quarter step is off by up to ~0.4 px."""
    rng = np.random.default_rng(0)
    codec = HeatmapCodec((96, 128), (24, 32), sigma, "unbiased")
    joints = rng.uniform([8, 8], [16, 24], (40, 2))
    maps = np.stack([codec.encode(4 * j[None], np.array([True]))[0] for j in joints])
    centers, sizes = np.tile([[48.0, 64.0]], (40, 1)), np.tile([[96.0, 128.0]], (40, 1))
    dark, _ = decode(maps, centers, sizes, "dark", sigma)
    hrnet, _ = decode(maps, centers, sizes)
    assert np.abs(dark[:, 0] / 4 - joints).max() < 0.05
    assert np.abs(hrnet[:, 0] / 4 - joints).max() > 0.2


def test_dark_leaves_flat_and_negative_maps_alone_and_rejects_unknown_decoders() -> None:
    flat = one_map({(5, 5): 1.0})  # a single spike: the smoothed map is a Gaussian at (5, 5)
    coords, _ = decode(flat, CENTER, SIZE, "dark", 1.0)
    np.testing.assert_allclose(coords[0, 0], to_image(5, 5), atol=1e-6)
    coords, maxvals = decode(one_map({}) - 1.0, CENTER, SIZE, "dark", 1.0)
    np.testing.assert_allclose(coords[0, 0], to_image(0, 0))
    with pytest.raises(ValueError, match="unknown heatmap decoder 'udp'"):
        decode(flat, CENTER, SIZE, "udp")
