"""Stable public path of :mod:`hintpose.topdown.codec` (keypoints <-> heatmaps)."""

from hintpose.topdown.codec import HeatmapCodec, cue_map, decode

__all__ = ["HeatmapCodec", "cue_map", "decode"]
