"""Top-down inference pieces: instances from boxes and cues, flip-tested heatmaps on disk,
heatmaps -> COCO results that pycocotools scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hintpose.config import PoseDataParams
from hintpose.data.params import DatasetParams, SyntheticConfig
from hintpose.data.prepare import prepare_dataset
from hintpose.data.transforms import affine_matrix, box_to_center_size, transform_points
from hintpose.errors import DataError
from hintpose.models.hintpose import HintPose
from hintpose.runtime import Runtime
from hintpose.scoring.evaluation import coco_keypoint_eval
from hintpose.topdown.codec import HeatmapCodec
from hintpose.topdown.inference import (
    PredictSettings,
    box_instances,
    gt_box_instances,
    predict_heatmaps,
)
from hintpose.topdown.postprocess import FRAME_COLUMNS, PostSettings, heatmaps_to_results
from hintpose.topdown.samples import TopDownDataset


@pytest.fixture(scope="module")
def val(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ds") / "dataset"
    params = DatasetParams(train_images=2, val_images=6, synthetic=SyntheticConfig())
    return prepare_dataset(root, params, progress=False)["val"]


def test_boxes_are_clipped_not_filtered_and_cue_fallbacks(val) -> None:
    """box_instances keeps every box the detect stage wrote (the one score/size filter is
    detector.score_thr / min_box_size there): small and low-scoring boxes stay, a box is
    clipped to its image, one entirely outside it is dropped and counted."""
    iid = next(iter(val.images))
    img = val.images[iid]
    boxes = [
        {"image_id": iid, "bbox": [10, 10, 80, 120], "score": 0.9, "cues": [[40, 50, 1.0],
                                                                           [60, 90, 0.5]]},
        {"image_id": iid, "bbox": [10, 10, 20, 120], "score": 0.9},  # narrower than 32: kept
        {"image_id": iid, "bbox": [10, 10, 80, 120], "score": 0.01},  # low score: kept
        {"image_id": iid, "bbox": [img["width"] + 5, 10, 40, 40], "score": 0.9},  # outside
        {"image_id": iid, "bbox": [-10, 20, 60, 60], "score": 0.8},  # no cue: center fallback
    ]
    with_cues = box_instances(val, boxes, "boxes.json", use_cues=True)
    assert [i.cue for i in with_cues.instances] == [(40.0, 50.0), (60.0, 90.0), None, None,
                                                    None]
    assert with_cues.box_index.tolist() == [0, 0, 1, 2, 4]
    assert [i.score for i in with_cues.instances] == pytest.approx([0.9, 0.9, 0.9, 0.01, 0.8])
    assert with_cues.stats == {"boxes_in": 5, "boxes": 4, "dropped_outside": 1,
                               "cue_fallbacks": 3}
    # clipped as in HRNet: the size extends from the clipped corner (hintpose.data.coco.clip_box)
    assert with_cues.instances[-1].bbox == (0.0, 20.0, 59.0, 59.0)
    plain = box_instances(val, boxes, "boxes.json", use_cues=False)
    assert plain.box_index.tolist() == [0, 1, 2, 4]
    assert all(i.cue is None for i in plain.instances) and plain.stats["cue_fallbacks"] == 0
    with pytest.raises(DataError, match="boxes.json: entry 0 refers to unknown image id 999"):
        box_instances(val, [{"image_id": 999, "bbox": [0, 0, 50, 50]}], "boxes.json", False)
    with pytest.raises(DataError, match=r"boxes.json: entry 0 needs a bbox \[x, y, w, h\]"):
        box_instances(val, [{"image_id": iid, "bbox": [0, 0, 50]}], "boxes.json", False)


def perfect_heatmap_stats(val, width: int, height: int) -> tuple[int, int, dict[str, float]]:
    """GT boxes, GT heatmaps at a ``width`` x ``height`` input, the same decode/rescore/NMS as
    the pipeline: (persons, results, COCO stats)."""
    inst = gt_box_instances(val).instances
    codec = HeatmapCodec.for_input(width, height, 2.0)
    maps, centers, sizes = [], [], []
    for ins, ann in zip(inst, val.training_persons(), strict=True):
        kpts = np.asarray(ann["keypoints"], float).reshape(-1, 3)
        c, s = box_to_center_size(ins.bbox, width / height, 1.25)
        crop = transform_points(kpts[:, :2], affine_matrix(c, s, 0, (width, height)))
        maps.append(codec.encode(crop, kpts[:, 2] > 0)[0])
        centers.append(c)
        sizes.append(s)
    heat = np.stack(maps).astype(np.float16)
    frame = pd.DataFrame([(i.image_id, b, *i.bbox, 1.0, *c, *s)
                          for b, (i, c, s) in enumerate(zip(inst, centers, sizes, strict=True))],
                         columns=list(FRAME_COLUMNS))
    results = heatmaps_to_results(lambda sl: heat[sl], frame, PostSettings(), chunk=5)
    return len(inst), len(results), coco_keypoint_eval(val.data, results)


def test_perfect_heatmaps_score_ap_one(val) -> None:
    """At HRNet's 288 x 384 input (72 x 96 heatmaps) the heatmaps of the GT poses decode,
    rescore and pass OKS-NMS into poses that score AP = AR = 1 on this split."""
    persons, results, stats = perfect_heatmap_stats(val, 288, 384)
    assert persons > 20 and results == persons  # no person lost to OKS-NMS
    assert stats["AP"] == pytest.approx(1.0, abs=1e-9)
    assert stats["AR"] == pytest.approx(1.0, abs=1e-9)


def test_small_heatmaps_lose_ap_only_at_strict_oks(val) -> None:
    """At the 96 x 128 input (24 x 32 heatmaps) the only loss is quantisation (errors up to
    ~0.6 heatmap pixel), which OKS punishes for small and heavily occluded persons (area =
    visible pixels): every pose is found at OKS 0.5 and 0.75, AP over 0.5:0.95 drops."""
    persons, results, stats = perfect_heatmap_stats(val, 96, 128)
    assert results == persons
    assert stats["AP50"] == pytest.approx(1.0, abs=1e-9)
    assert stats["AP75"] == pytest.approx(1.0, abs=1e-9)
    assert 0.75 < stats["AP"] < 1.0


def test_flip_tested_heatmaps_written_to_one_array(val, tmp_path: Path) -> None:
    inst = gt_box_instances(val).instances[:5]
    ds = TopDownDataset(val, inst, PoseDataParams(input_width=48, input_height=64), False,
                        cue="point")
    torch.manual_seed(0)
    model = HintPose(4, cue="point", recurrent=True, hops=2)
    torch.nn.init.constant_(model.backbone.final_layer.bias, 0.5)  # outputs ~0.5, not ~0
    rt = Runtime(torch.device("cpu"), bf16=False, channels_last=False)
    centers, sizes = predict_heatmaps(model, ds, tmp_path / "h.npy",
                                      PredictSettings(batch_size=2, flip_test=True), rt)
    heat = np.load(tmp_path / "h.npy", mmap_mode="r")
    assert heat.shape == (5, 17, 16, 12) and heat.dtype == np.float16
    assert np.abs(heat.astype(np.float32) - 0.5).max() < 0.01  # every row written
    np.testing.assert_allclose(centers[0], box_to_center_size(inst[0].bbox, 0.75, 1.25)[0],
                               rtol=1e-5)
    assert sizes.shape == (5, 2)
