"""The cue probe: crowded GT pairs, the follow statistics, and an untrained cue model (whose
cue block adds nothing yet) giving exactly the plain HRNet's numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hintpose.config import EvalParams, ModelParams, PoseDataParams, PoseParams
from hintpose.data.coco import CocoPersons
from hintpose.data.crowd import box_iou
from hintpose.data.params import DatasetParams, SyntheticConfig
from hintpose.data.prepare import prepare_dataset
from hintpose.runtime import Runtime
from hintpose.topdown.cue_probe import (
    ProbeSettings,
    crowded_pairs,
    follow_stats,
    probe_instances,
    run_cue_probe,
)
from hintpose.topdown.spec import ModelSpec

CPU = Runtime(torch.device("cpu"), bf16=False, channels_last=False)


@pytest.fixture(scope="module")
def val(tmp_path_factory: pytest.TempPathFactory) -> CocoPersons:
    root = tmp_path_factory.mktemp("probe")
    return prepare_dataset(root, DatasetParams(train_images=1, val_images=6), progress=False)["val"]


def _kpts(ann: dict) -> np.ndarray:
    return np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)


def test_pairs_overlap_and_hold_the_neighbour_inside(val: CocoPersons) -> None:
    pairs = crowded_pairs(val, 0)
    assert pairs, "the synthetic crowds should give overlapping persons"
    for a, b, cue_a, cue_b in pairs:
        assert a["image_id"] == b["image_id"] and a["id"] != b["id"]
        box = a["clean_bbox"]
        assert box_iou(box, [b["clean_bbox"]])[0] >= 0.1
        k = _kpts(b)
        inside = ((k[:, 2] > 0) & (k[:, 0] >= box[0]) & (k[:, 0] <= box[0] + box[2])
                  & (k[:, 1] >= box[1]) & (k[:, 1] <= box[1] + box[3]))
        assert inside.sum() >= 4
        for cue, person in ((cue_a, a), (cue_b, b)):  # a labeled joint of the person, in a's box
            assert box[0] <= cue[0] <= box[0] + box[2] and box[1] <= cue[1] <= box[1] + box[3]
            assert np.hypot(*(_kpts(person)[:, :2] - cue).T).min() < 1e-9
    thinned = crowded_pairs(val, 3)
    assert len(thinned) == min(3, len(pairs))
    assert [p[:2] for p in thinned][0] == pairs[0][:2] and thinned[-1][:2] == pairs[-1][:2]
    instances = probe_instances(pairs, use_cue=True)
    assert [i.cue for i in instances[:2]] == [pairs[0][2], pairs[0][3]]
    assert all(i.cue is None for i in probe_instances(pairs, use_cue=False))


def test_follow_stats(val: CocoPersons) -> None:
    pairs = crowded_pairs(val, 0)
    gt_a = np.stack([_kpts(a) for a, *_ in pairs])
    gt_b = np.stack([_kpts(b) for _, b, *_ in pairs])
    follows = follow_stats(pairs, gt_a, gt_b)  # a perfect cue follower
    assert follows == {"pairs": len(pairs), "oks_own": 1.0, "oks_other": 1.0, "follow_rate": 1.0}
    ignores = follow_stats(pairs, gt_a, gt_a)  # always the box's own person
    assert ignores["oks_own"] == 1.0 and ignores["follow_rate"] == 0.0
    assert ignores["oks_other"] < 1.0


def test_untrained_cue_model_scores_as_its_backbone(val: CocoPersons, tmp_path: Path) -> None:
    """The cue block starts at zero, so before training the cue changes nothing: the probe of
    a fresh cue model equals that of the plain model with the same backbone weights."""
    pose = PoseParams(width=4, data=PoseDataParams(input_width=48, input_height=64))
    settings = ProbeSettings.of(EvalParams(flip_test=False, batch_size=8, workers=0,
                                           cue_probe_pairs=5))
    stats = {}
    for cue in ("none", "point"):
        spec = ModelSpec.from_params(pose, ModelParams(cue=cue, recurrent=False, seed=1),
                                     val.category["keypoints"])
        torch.manual_seed(0)
        model = spec.build()
        stats[cue] = run_cue_probe(model, spec, val, tmp_path / f"{cue}.npy", settings, CPU)
    assert stats["none"]["pairs"] == 5 and 0.0 <= stats["none"]["follow_rate"] <= 1.0
    assert stats["point"] == stats["none"]


def test_no_crowded_pairs_no_probe_file(tmp_path: Path) -> None:
    """A split without overlapping persons (one per image) has nothing to probe: zeros, and no
    heatmap file is written (the infer stage then has nothing to remove)."""
    alone = SyntheticConfig(persons_min=1, persons_max=1)
    val = prepare_dataset(tmp_path / "data", DatasetParams(train_images=1, val_images=3,
                                                           synthetic=alone),
                          progress=False)["val"]
    pose = PoseParams(width=4, data=PoseDataParams(input_width=48, input_height=64))
    spec = ModelSpec.from_params(pose, ModelParams(cue="point", recurrent=False, seed=1),
                                 val.category["keypoints"])
    stats = run_cue_probe(spec.build(), spec, val, tmp_path / "probe.npy",
                          ProbeSettings.of(EvalParams(flip_test=False)), CPU)
    assert stats == {"pairs": 0, "oks_own": 0.0, "oks_other": 0.0, "follow_rate": 0.0}
    assert not (tmp_path / "probe.npy").exists()
