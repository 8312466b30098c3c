"""Person boxes from an MMDetection model, filtered once by score and size, and their COCO box
AP against the GT persons."""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from hintpose.data.coco import read_image
from hintpose.detection.config import mmdet_warnings_off

BOX_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR", "ARs",
                  "ARm", "ARl")


# --------------------------------------------------------------------------- inference


def _test_pipeline(cfg: Any) -> Any:
    """The config's test pipeline fed with decoded arrays, without annotation loading."""
    from mmcv.transforms import Compose

    steps = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
    if steps and "LoadImageFromFile" in str(steps[0]["type"]):
        steps[0] = {"type": "mmdet.LoadImageFromNDArray"}
    steps = [s for s in steps if "LoadAnnotations" not in str(s["type"])]
    return Compose(steps)


@torch.no_grad()
def detect_images(
    model: torch.nn.Module, images: Sequence[tuple[int, Path]], label: int, batch_size: int,
    score_thr: float, min_box_size: float, category_id: int = 1,
) -> list[dict[str, Any]]:
    """Person boxes (COCO results: ``image_id, category_id, bbox [x, y, w, h], score``) for
    ``images`` (id, path), batched; boxes of other classes, under ``score_thr`` or smaller
    than ``min_box_size`` on a side are dropped."""
    pipeline = _test_pipeline(model.cfg)
    with mmdet_warnings_off():
        return _detect(model, pipeline, images, label, batch_size, score_thr, min_box_size,
                       category_id)


def _detect(model: torch.nn.Module, pipeline: Any, images: Sequence[tuple[int, Path]],
            label: int, batch_size: int, score_thr: float, min_box_size: float,
            category_id: int) -> list[dict[str, Any]]:
    from mmengine.dataset import pseudo_collate

    results: list[dict[str, Any]] = []
    bar = tqdm(total=len(images), desc="detect", unit="img")
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        items = [pipeline({"img": read_image(path), "img_id": iid, "img_path": str(path)})
                 for iid, path in chunk]
        outputs = model.test_step(pseudo_collate(items))
        for (iid, _), out in zip(chunk, outputs, strict=True):
            pred = out.pred_instances
            keep = (pred.labels == label) & (pred.scores >= score_thr)
            height, width = out.metainfo["ori_shape"][:2]
            boxes = pred.bboxes[keep].float().cpu().numpy()
            # a padded test pipeline can place boxes in the padding: clip to the image
            boxes = boxes.clip(0, [width, height, width, height])
            scores = pred.scores[keep].float().cpu().numpy()
            for (x1, y1, x2, y2), s in zip(boxes, scores, strict=True):
                w, h = float(x2 - x1), float(y2 - y1)
                if w < min_box_size or h < min_box_size:
                    continue
                results.append({"image_id": int(iid), "category_id": category_id,
                                "bbox": [round(float(x1), 2), round(float(y1), 2),
                                         round(w, 2), round(h, 2)],
                                "score": round(float(s), 5)})
        bar.update(len(chunk))
    bar.close()
    return results


def coco_box_eval(gt: dict[str, Any], dets: Sequence[dict[str, Any]],
                  ignore_below: float = 0.0) -> dict[str, float]:
    """COCO box stats (``BOX_STAT_NAMES``) of ``dets`` against the person boxes of ``gt``.
    With ``ignore_below`` > 0, GT persons whose box is narrower or lower than that are
    'don't care' regions (COCO's iscrowd handling): finding them is not required and
    detections on them are not false positives."""
    data = copy.deepcopy(gt)
    for ann in data["annotations"]:
        if ignore_below and min(ann["bbox"][2], ann["bbox"][3]) < ignore_below:
            ann["iscrowd"] = 1
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        if not dets:
            return dict.fromkeys(BOX_STAT_NAMES, 0.0)
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(list(dets))), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: float(v) for k, v in zip(BOX_STAT_NAMES, ev.stats, strict=True)}
