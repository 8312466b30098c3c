"""Stable public path of :mod:`hintpose.topdown.postprocess` (rescoring, OKS-NMS)."""

from hintpose.topdown.postprocess import coco_oks, nms_per_image, oks_nms, rescore, soft_oks_nms

__all__ = ["coco_oks", "nms_per_image", "oks_nms", "rescore", "soft_oks_nms"]
