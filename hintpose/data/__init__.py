"""Data: the synthetic crowded-people generator, COCO loading and validation, top-down samples."""
