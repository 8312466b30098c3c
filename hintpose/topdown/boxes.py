"""Person boxes and instance cues: reading and checking the box and cue files, GT boxes, and
the cues of a cue file that lie inside other boxes. Pure Python (no torch).

A cues file is aligned one to one with its detections: entry i is ``{"image_id", "bbox",
"score", "cues": [[x, y, score], ...]}`` for box i.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hintpose.data.coco import CocoPersons, check_bbox, result_records
from hintpose.errors import DataError
from hintpose.io import finite_number, read_json


def read_boxes(path: str | Path, coco: CocoPersons) -> list[dict[str, Any]]:
    """Person boxes from a COCO results file (a list of ``image_id``, ``category_id``,
    ``bbox`` [x, y, w, h], ``score``), checked against the split ``coco``. Anything else
    (not a list, an unknown image id, another category, a bbox that is not 4 finite numbers
    with w, h >= 0, a missing score) is a DataError naming the file and the entry."""
    path = Path(path)
    boxes = []
    for where, rec in result_records(read_json(path, "detections file"), str(path), coco.images,
                                     coco.category["id"], "detections",
                                     coco.annotation_file.name):
        boxes.append({"image_id": rec["image_id"], "bbox": check_bbox(rec.get("bbox"), where),
                      "score": float(rec["score"])})
    return boxes


def read_cues(path: str | Path, boxes: Sequence[dict[str, Any]],
              boxes_source: str) -> list[list[list[float]]]:
    """Instance cues from a cues file aligned one to one with ``boxes`` (the detections it
    was made from): entry i is ``{"image_id", "bbox", "score", "cues": [[x, y, score], ...]}``
    for box i. Returns the cue lists; a misaligned or malformed file is a DataError naming the
    entry."""
    path = Path(path)
    data = read_json(path, "cues file")
    if not isinstance(data, list):
        raise DataError(f"{path}: cues must be a JSON list of {{image_id, bbox, score, cues}} "
                        f"records, got a {type(data).__name__}")
    if len(data) != len(boxes):
        raise DataError(f"{path}: {len(data)} entries but {boxes_source} has {len(boxes)} "
                        "boxes (a cues file is aligned one to one with its detections)")
    cues = []
    for i, (rec, box) in enumerate(zip(data, boxes, strict=True)):
        where = f"{path}: entry {i}"
        if not isinstance(rec, dict):
            raise DataError(f"{where} is not a JSON object: {str(rec)[:80]}")
        bbox = rec.get("bbox")
        same = (rec.get("image_id") == box["image_id"] and isinstance(bbox, list)
                and len(bbox) == 4 and all(map(finite_number, bbox))
                and max(abs(a - b) for a, b in zip(bbox, box["bbox"], strict=True)) < 1e-2)
        if not same:
            raise DataError(f"{where} (image {rec.get('image_id')!r}, bbox {bbox!r}) does not "
                            f"match box {i} of {boxes_source} (image {box['image_id']}, bbox "
                            f"{box['bbox']})")
        points = rec.get("cues")
        if not (isinstance(points, list) and all(
                isinstance(p, list) and len(p) == 3 and all(map(finite_number, p))
                for p in points)):
            raise DataError(f"{where} needs cues as a list of [x, y, score], got "
                            f"{str(points)[:80]}")
        cues.append([[float(v) for v in p] for p in points])
    return cues


def gt_boxes(coco: CocoPersons) -> list[dict[str, Any]]:
    """Box records (score 1) of the GT persons HRNet evaluates with GT boxes: not crowd, with
    labeled joints (``box_instances`` clips them as training does)."""
    return [{"image_id": a["image_id"], "bbox": [float(v) for v in a["bbox"]], "score": 1.0}
            for a in coco.training_persons()]


def cues_inside(boxes: Sequence[dict[str, Any]],
                cue_records: Sequence[dict[str, Any]]) -> list[list[list[float]]]:
    """For each box, the cue points of its image (pooled over every record of
    ``cue_records``, duplicates merged) that lie inside the box, best score first: the cue
    stage's rule (peaks inside a box) applied to boxes it did not see, such as GT boxes."""
    pooled: dict[int, dict[tuple[float, float], float]] = defaultdict(dict)
    for rec in cue_records:
        points = pooled[rec["image_id"]]
        for x, y, score in rec.get("cues") or []:
            key = (round(float(x), 2), round(float(y), 2))
            points[key] = max(points.get(key, score), score)
    out = []
    for box in boxes:
        x, y, w, h = box["bbox"]
        inside = [(-s, px, py) for (px, py), s in pooled.get(box["image_id"], {}).items()
                  if x <= px <= x + w and y <= py <= y + h]
        out.append([[px, py, -s] for s, px, py in sorted(inside)])
    return out


def with_cues(boxes: Sequence[dict[str, Any]],
              cues: Sequence[Sequence[Sequence[float]]]) -> list[dict[str, Any]]:
    """Box records with their ``cues`` lists attached (``cues`` aligned with ``boxes``)."""
    return [{**box, "cues": [list(c) for c in cue]}
            for box, cue in zip(boxes, cues, strict=True)]
