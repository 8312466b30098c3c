"""Stable public path of :mod:`hintpose.scoring.evaluation` (pycocotools keypoint AP)."""

from hintpose.scoring.evaluation import STAT_NAMES, coco_keypoint_eval, crowd_level_eval

__all__ = ["STAT_NAMES", "coco_keypoint_eval", "crowd_level_eval"]
