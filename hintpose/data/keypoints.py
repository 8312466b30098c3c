"""Person-keypoint layouts: COCO's constants, and the OKS sigmas and skeleton of any dataset's
person category (COCO, CrowdPose, OCHuman), found by keypoint name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hintpose.errors import DataError

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


#: OKS sigma of every keypoint name this project knows: COCO's 17 (pycocotools) and
#: CrowdPose's head and neck (its evaluation's 0.079; its other 12 joints are COCO's).
SIGMA_BY_NAME: dict[str, float] = {
    **dict(zip(KEYPOINT_NAMES, COCO_SIGMAS.tolist(), strict=True)),
    "head": 0.079, "head_top": 0.079, "top_head": 0.079, "neck": 0.079,
}

#: Limbs by joint names: COCO's skeleton and CrowdPose's head-neck-shoulders. A dataset's
#: skeleton is the pairs of these whose joints it has (when its own does not fit its joints).
LIMBS_BY_NAME: tuple[tuple[str, str], ...] = (
    *((KEYPOINT_NAMES[a - 1], KEYPOINT_NAMES[b - 1]) for a, b in SKELETON),
    ("head", "neck"), ("neck", "left_shoulder"), ("neck", "right_shoulder"),
    ("head_top", "neck"), ("top_head", "neck"),
)


def keypoint_sigmas(category: Mapping[str, Any], where: str = "the person category"
                    ) -> np.ndarray:
    """The OKS sigmas (J,) of a person category: its own ``sigmas`` list when it has one,
    else by keypoint name (``SIGMA_BY_NAME``); a joint without a known sigma is a DataError
    naming it."""
    names = list(category["keypoints"])
    if "sigmas" in category:
        sigmas = np.asarray(category["sigmas"], dtype=np.float64)
        if sigmas.shape != (len(names),) or not np.all(np.isfinite(sigmas) & (sigmas > 0)):
            raise DataError(f"{where}: sigmas must be {len(names)} positive numbers, one per "
                            "keypoint")
        return sigmas
    unknown = [n for n in names if n not in SIGMA_BY_NAME]
    if unknown:
        raise DataError(f"{where}: no OKS sigma known for keypoint(s) {', '.join(unknown)} "
                        "(add a 'sigmas' list to the category)")
    return np.array([SIGMA_BY_NAME[n] for n in names])


def skeleton_of(category: Mapping[str, Any]) -> list[tuple[int, int]]:
    """1-based joint pairs to draw: the category's ``skeleton`` when every pair is one of its
    joints, else the ``LIMBS_BY_NAME`` pairs of its keypoint names (CrowdPose's files, for one,
    carry COCO's 17-joint skeleton)."""
    names: Sequence[str] = list(category["keypoints"])
    given = [tuple(pair) for pair in category.get("skeleton") or []]
    if given and all(len(p) == 2 and all(1 <= int(j) <= len(names) for j in p) for p in given):
        return [(int(a), int(b)) for a, b in given]
    index = {n: i + 1 for i, n in enumerate(names)}
    return [(index[a], index[b]) for a, b in LIMBS_BY_NAME if a in index and b in index]
