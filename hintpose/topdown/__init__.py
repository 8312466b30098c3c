"""Top-down pose estimation: codec, samples, training recipe, boxes, inference, post-processing."""
