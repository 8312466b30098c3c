"""Pictures to check by eye: skeletons and boxes drawn on images, contact sheets."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from hintpose.data.coco import CocoPersons, read_image

#: One colour per person (BGR), cycled.
PALETTE = [(60, 180, 255), (80, 220, 80), (255, 120, 60), (200, 80, 220), (0, 230, 230),
           (240, 240, 240), (40, 90, 250), (250, 200, 40)]


def draw_person(image: np.ndarray, keypoints: np.ndarray, skeleton: Sequence[Sequence[int]],
                color: tuple[int, int, int], bbox: Sequence[float] | None = None,
                min_visibility: float = 0.0) -> None:
    """Draw one skeleton in place: keypoints (K, 3), 1-based COCO skeleton pairs. Joints with
    the third value <= ``min_visibility`` are skipped; occluded GT joints (v=1) are hollow."""
    pts = np.asarray(keypoints, dtype=np.float64)
    shown = pts[:, 2] > min_visibility
    for a, b in skeleton:
        if shown[a - 1] and shown[b - 1]:
            p, q = pts[a - 1, :2], pts[b - 1, :2]
            cv2.line(image, tuple(np.round(p).astype(int)), tuple(np.round(q).astype(int)),
                     color, 1, cv2.LINE_AA)
    for x, y, v in pts[shown]:
        filled = -1 if v != 1 else 1
        cv2.circle(image, (round(x), round(y)), 2, color, filled, cv2.LINE_AA)
    if bbox is not None:
        x, y, w, h = (round(v) for v in bbox)
        cv2.rectangle(image, (x, y), (x + w, y + h), color, 1)


def contact_sheet(tiles: Sequence[np.ndarray], columns: int, tile_width: int,
                  captions: Sequence[str] | None = None) -> np.ndarray:
    """Tile BGR images (resized to ``tile_width``, aspect kept) into one sheet."""
    resized = [cv2.resize(t, (tile_width, round(t.shape[0] * tile_width / t.shape[1])),
                          interpolation=cv2.INTER_AREA) for t in tiles]
    tile_h = max(t.shape[0] for t in resized)
    rows = -(-len(resized) // columns)
    sheet = np.full((rows * tile_h, columns * tile_width, 3), 255, dtype=np.uint8)
    for i, tile in enumerate(resized):
        r, c = divmod(i, columns)
        sheet[r * tile_h:r * tile_h + tile.shape[0], c * tile_width:(c + 1) * tile_width] = tile
        if captions:
            org = (c * tile_width + 4, r * tile_h + 14)
            cv2.putText(sheet, captions[i], org, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3)
            cv2.putText(sheet, captions[i], org, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    return sheet


def dataset_sheet(coco: CocoPersons, image_ids: Sequence[int], columns: int = 4,
                  tile_width: int = 320) -> np.ndarray:
    """GT skeletons and boxes of the given images, captioned with their crowd index."""
    tiles, captions = [], []
    for image_id in image_ids:
        image = read_image(coco.image_path(image_id))
        persons = [a for a in coco.annotations_of(image_id) if not a.get("iscrowd", 0)]
        for i, ann in enumerate(persons):
            kpts = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
            draw_person(image, kpts, coco.skeleton,
                        PALETTE[i % len(PALETTE)], ann["bbox"])
        tiles.append(image)
        ci = coco.images[image_id].get("crowdIndex")
        captions.append(f"id {image_id}" + (f"  crowd {ci:.2f}" if ci is not None else ""))
    return contact_sheet(tiles, columns, tile_width, captions)
