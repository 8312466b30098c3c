"""COCO person-keypoint constants: joint names, skeleton, left/right pairs and OKS sigmas."""

from __future__ import annotations

import numpy as np

#: The 17 COCO keypoints in COCO order.
KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)

#: COCO's person skeleton, 1-based joint indices as in the COCO annotation files.
SKELETON: tuple[tuple[int, int], ...] = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
    (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)

#: 0-based (left, right) joint pairs swapped by a horizontal flip.
FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16),
)

#: Per-keypoint OKS sigmas of the COCO keypoint metric (pycocotools' ``kpt_oks_sigmas``).
COCO_SIGMAS: np.ndarray = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62,
     1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
) / 10.0


def person_category(num_joints: int = 17) -> dict:
    """COCO's person category (id 1) with keypoint names and skeleton; for a joint count
    other than 17, generic names ``joint_<i>`` and an empty skeleton."""
    if num_joints == len(KEYPOINT_NAMES):
        names = list(KEYPOINT_NAMES)
        skeleton = [list(pair) for pair in SKELETON]
    elif num_joints > 0:
        names = [f"joint_{i}" for i in range(num_joints)]
        skeleton = []
    else:
        raise ValueError(f"num_joints must be positive, got {num_joints}")
    return {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": names,
        "skeleton": skeleton,
    }
