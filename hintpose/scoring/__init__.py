"""COCO keypoint scoring (overall, by crowd level) and the results tables."""
