"""Top-down inference pieces: instances from boxes and cues, flip-tested heatmaps on disk,
heatmaps -> COCO results that pycocotools scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hintpose.codec import HeatmapCodec
from hintpose.config import DatasetParams, PoseDataParams
from hintpose.data.prepare import prepare_dataset
from hintpose.data.synthetic import SyntheticConfig
from hintpose.data.topdown import (
    TopDownDataset,
    affine_matrix,
    box_to_center_size,
    transform_points,
)
from hintpose.errors import DataError
from hintpose.evaluation import coco_keypoint_eval
from hintpose.inference import (
    box_instances,
    gt_box_instances,
    heatmaps_to_results,
    predict_heatmaps,
)
from hintpose.models.hintpose import HintPose


@pytest.fixture(scope="module")
def val(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ds") / "dataset"
    params = DatasetParams(train_images=2, val_images=6, synthetic=SyntheticConfig())
    return prepare_dataset(root, params, progress=False)["val"]


def test_box_filters_and_cue_fallbacks(val) -> None:
    iid = next(iter(val.images))
    boxes = [
        {"image_id": iid, "bbox": [10, 10, 80, 120], "score": 0.9, "cues": [[40, 50, 1.0],
                                                                           [60, 90, 0.5]]},
        {"image_id": iid, "bbox": [10, 10, 20, 120], "score": 0.9},  # narrower than 32
        {"image_id": iid, "bbox": [10, 10, 80, 120], "score": 0.01},  # below the threshold
        {"image_id": iid, "bbox": [20, 20, 60, 60], "score": 0.8},  # no cue: center fallback
    ]
    with_cues = box_instances(val, boxes, "boxes.json", 32, 0.05, use_cues=True)
    assert [i.cue for i in with_cues.instances] == [(40.0, 50.0), (60.0, 90.0), None]
    assert with_cues.box_index.tolist() == [0, 0, 3]
    assert with_cues.stats == {"boxes_in": 4, "boxes": 2, "dropped_small": 1,
                               "dropped_score": 1, "cue_fallbacks": 1}
    plain = box_instances(val, boxes, "boxes.json", 32, 0.05, use_cues=False)
    assert len(plain.instances) == 2 and plain.stats["cue_fallbacks"] == 0
    with pytest.raises(DataError, match="boxes.json: entry 0 refers to unknown image id 999"):
        box_instances(val, [{"image_id": 999, "bbox": [0, 0, 50, 50]}], "boxes.json", 32, 0,
                      False)


def test_perfect_heatmaps_score_ap_one(val) -> None:
    """GT boxes, GT heatmaps, the same decode/rescore/NMS as the pipeline: AP = 1."""
    inst = gt_box_instances(val).instances
    codec = HeatmapCodec.for_input(96, 128, 2.0)
    maps, centers, sizes = [], [], []
    for ins, ann in zip(inst, val.training_persons(), strict=True):
        kpts = np.asarray(ann["keypoints"], float).reshape(-1, 3)
        c, s = box_to_center_size(ins.bbox, 0.75, 1.25)
        crop = transform_points(kpts[:, :2], affine_matrix(c, s, 0, (96, 128)))
        maps.append(codec.encode(crop, kpts[:, 2] > 0)[0])
        centers.append(c)
        sizes.append(s)
    heat = np.stack(maps).astype(np.float16)
    results = heatmaps_to_results(lambda sl: heat[sl], len(inst), np.array(centers),
                                  np.array(sizes), np.array([i.image_id for i in inst]),
                                  np.ones(len(inst)), chunk=5)
    assert len(results) <= len(inst)
    stats = coco_keypoint_eval(val.data, results)
    # The only loss is the quantisation of 32 x 24 heatmaps (errors up to ~0.6 heatmap pixel),
    # which OKS punishes for small and heavily occluded persons (area = visible pixels).
    assert stats["AP"] > 0.75


def test_flip_tested_heatmaps_written_to_one_array(val, tmp_path: Path) -> None:
    inst = gt_box_instances(val).instances[:5]
    ds = TopDownDataset(val, inst, PoseDataParams(input_width=48, input_height=64), False)
    torch.manual_seed(0)
    model = HintPose(4, instance_cue=True, recurrent=True, hops=2)
    torch.nn.init.constant_(model.backbone.final_layer.bias, 0.5)  # outputs ~0.5, not ~0
    centers, sizes = predict_heatmaps(model, ds, tmp_path / "h.npy", 2, torch.device("cpu"),
                                      bf16=False, channels_last=False)
    heat = np.load(tmp_path / "h.npy", mmap_mode="r")
    assert heat.shape == (5, 17, 16, 12) and heat.dtype == np.float16
    assert np.abs(heat.astype(np.float32) - 0.5).max() < 0.01  # every row written
    np.testing.assert_allclose(centers[0], box_to_center_size(inst[0].bbox, 0.75, 1.25)[0],
                               rtol=1e-5)
    assert sizes.shape == (5, 2)
