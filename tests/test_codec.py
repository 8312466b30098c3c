"""HRNet's decode details: argmax ties, quarter-pixel step, border rule, inverse crop."""

from __future__ import annotations

import numpy as np

from hintpose.topdown.codec import decode

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


def test_old_path_re_exports_the_codec() -> None:
    """hintpose.codec stays a public path (DESIGN.md) for the same functions."""
    import hintpose.codec
    import hintpose.topdown.codec

    assert hintpose.codec.decode is decode
    assert hintpose.codec.HeatmapCodec is hintpose.topdown.codec.HeatmapCodec
    assert hintpose.codec.cue_map is hintpose.topdown.codec.cue_map
