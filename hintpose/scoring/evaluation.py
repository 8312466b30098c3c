"""COCO keypoint scoring with pycocotools, overall and by CrowdPose crowd level."""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hintpose.data.coco import BOX_AREA_FACTOR, validate_keypoint_results
from hintpose.data.crowd import CROWD_LEVELS, crowd_index
from hintpose.data.keypoints import keypoint_sigmas
from hintpose.io import read_json

STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
def _load_gt(gt: str | Path | dict[str, Any]) -> COCO:
    data = copy.deepcopy(gt) if isinstance(gt, dict) else read_json(gt, "ground-truth file")
    for ann in data.get("annotations", []):
        if "area" not in ann:  # CrowdPose: scale from the box, as its use_area=False does
            ann["area"] = float(ann["bbox"][2] * ann["bbox"][3] * BOX_AREA_FACTOR)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _load_results(results: str | Path | Sequence[dict[str, Any]], gt: COCO,
                  source: str | None = None) -> list[dict]:
    """The results as a list, each entry checked (hintpose.data.coco.validate_keypoint_results:
    a known image, the person category, 3 x J finite keypoint values with J from the GT's
    category, a finite score); an entry without ``category_id`` gets the person's."""
    if source is None:
        source = str(results) if isinstance(results, str | Path) else "results"
    dets = read_json(results, "results file") if isinstance(results, str | Path) else results
    category = gt.loadCats(gt.getCatIds())[0]
    validate_keypoint_results(dets, source, set(gt.getImgIds()), category["id"],
                              len(category["keypoints"]), "the ground truth")
    return [d if "category_id" in d else {**d, "category_id": category["id"]} for d in dets]


def coco_keypoint_eval(
    gt_json: str | Path | dict[str, Any],
    results: str | Path | Sequence[dict[str, Any]],
    image_ids: Sequence[int] | None = None,
    sigmas: np.ndarray | None = None,
    source: str | None = None,
) -> dict[str, float]:
    """The ten COCO keypoint stats (AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl) of
    ``results`` (a COCO results list or file) against ``gt_json``, optionally on a subset of
    images. Empty results score 0 with a warning; results for unknown images are an error
    naming ``source`` (default: the results file)."""
    gt = _load_gt(gt_json)
    dets = _load_results(results, gt, source)
    if image_ids is not None:
        wanted = set(image_ids)
        dets = [d for d in dets if d["image_id"] in wanted]
    if not dets:
        warnings.warn("no keypoint results to evaluate: every stat is 0", stacklevel=2)
        return dict.fromkeys(STAT_NAMES, 0.0)
    category = gt.loadCats(gt.getCatIds())[0]
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(copy.deepcopy(dets))
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(
            sigmas if sigmas is not None else keypoint_sigmas(category, "the ground truth"))
        if image_ids is not None:
            ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats, strict=True)}


def crowd_level_eval(
    gt_json: str | Path | dict[str, Any], results: str | Path | Sequence[dict[str, Any]],
    source: str | None = None,
) -> dict[str, dict[str, float] | None]:
    """AP/AR on the easy / medium / hard images by CrowdPose crowd index (the image's
    ``crowdIndex`` when present, else computed); None for a level without images."""
    data = gt_json if isinstance(gt_json, dict) else read_json(gt_json, "ground-truth file")
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    levels: dict[str, dict[str, float] | None] = {}
    for name, (lo, hi) in CROWD_LEVELS.items():
        ids = [img["id"] for img in data["images"]
               if lo <= img.get("crowdIndex", crowd_index(by_image.get(img["id"], []))) < hi]
        levels[name] = coco_keypoint_eval(data, results, ids, source=source) if ids else None
    return levels
