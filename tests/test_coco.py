"""COCO loading: the real samples load; every bad input is one clear error naming it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import png_claiming

from hintpose.data.coco import clip_box, load_coco, preloaded_image, read_image
from hintpose.data.crowd import crowd_index
from hintpose.errors import DataError


def test_mmpose_coco_annotations(annotations: Path) -> None:
    # xtcocoapi's example_coco_val.json is byte-identical to mmpose's tests/data/coco/test_coco.json
    coco = load_coco(annotations / "xtcocoapi/example_coco_val.json", annotations, "none")
    assert coco.num_joints == 17 and len(coco.images) == 4 and len(coco.annotations) == 14
    trainable = coco.training_persons()
    assert len(trainable) == 12  # the two num_keypoints == 0 persons are skipped, as in HRNet
    assert {a["id"] for a in coco.annotations} - {a["id"] for a in trainable} == {1202706, 508900}


def test_ochuman_annotations(annotations: Path) -> None:
    coco = load_coco(annotations / "mmpose_ochuman/test_ochuman.json", annotations, "none")
    assert coco.num_joints == 17 and len(coco.images) == 3
    assert len(coco.training_persons()) == 5


def test_crowdpose_fourteen_joints_no_area(annotations: Path) -> None:
    coco = load_coco(annotations / "mmpose_crowdpose/test_crowdpose.json", annotations, "none")
    assert coco.num_joints == 14 and len(coco.training_persons()) == 4
    # CrowdPose's files have no area: every person gets 0.53 x its box, as its evaluation
    raw = {a["id"]: a for a in json.loads((annotations / "mmpose_crowdpose/test_crowdpose.json")
                                          .read_text())["annotations"]}
    assert all("area" not in raw[a["id"]] for a in coco.annotations)
    assert all(a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3] * 0.53)
               for a in coco.annotations)
    # our crowd index reproduces the values shipped with CrowdPose
    for iid, rec in coco.images.items():
        assert crowd_index(coco.annotations_of(iid)) == pytest.approx(rec["crowdIndex"], abs=0.01)


@pytest.mark.parametrize(("annotation_file", "persons"), [
    ("mmpose_coco/test_coco.json", 12), ("mmpose_ochuman/test_ochuman.json", 5),
    ("mmpose_crowdpose/test_crowdpose.json", 4)])
def test_real_photos_decode(realdata: Path, annotation_file: str, persons: int) -> None:
    """The same samples with their photos: every image decodes at the size its JSON says."""
    folder = realdata / Path(annotation_file).parent
    coco = load_coco(realdata / annotation_file, folder, "decode")
    assert len(coco.training_persons()) == persons


def test_crowdpose_val_crowd_index_matches(annotations: Path) -> None:
    coco = load_coco(annotations / "xtcocoapi/example_crowdpose_val.json", annotations, "none")
    assert len(coco.images) == 4
    for iid, rec in coco.images.items():
        assert crowd_index(coco.annotations_of(iid)) == pytest.approx(rec["crowdIndex"], abs=0.01)


def test_crowd_region_kept_but_not_trained(annotations: Path) -> None:
    coco = load_coco(annotations / "faster_coco_eval_keypoints/gt_dataset.json", annotations,
                     "none")
    crowd = [a for a in coco.annotations if a["iscrowd"]]
    assert [a["id"] for a in crowd] == [900100139099]
    assert all(not a["iscrowd"] and a["num_keypoints"] > 0 for a in coco.training_persons())


def test_clip_box_as_hrnet() -> None:
    # HRNet extends from the clipped corner: x2 = x1 + (w - 1)
    assert clip_box([-10, 5, 30, 20], 100, 100) == [0.0, 5.0, 29.0, 19.0]
    assert clip_box([10, 10, 0, 5], 100, 100) is None


# --------------------------------------------------------------------------- bad inputs


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[dict, Path]:
    """A valid two-image dataset written to tmp_path/images."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(images / name), np.full((40, 60, 3), 128, np.uint8))
    kpts = [0] * 51
    kpts[15:18] = [10, 12, 2]
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 60, "height": 40},
                   {"id": 2, "file_name": "b.jpg", "width": 60, "height": 40}],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 30],
                         "area": 500, "iscrowd": 0, "keypoints": kpts, "num_keypoints": 1}],
        "categories": [{"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(17)],
                        "skeleton": []}],
    }
    return data, images


def load(tmp_path: Path, data: object, images: Path, check: str = "decode"):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return load_coco(path, images, check)


def test_tiny_valid(tmp_path: Path, tiny) -> None:
    data, images = tiny
    assert len(load(tmp_path, data, images).training_persons()) == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["annotations"][0].update(keypoints=[0] * 50),
         "annotation 7 keypoints must be 51 finite numbers (3 x 17 joints), got 50 values"),
        (lambda d: d["images"][1].update(file_name="../escape.jpg"), "escapes the image root"),
        (lambda d: d["images"][1].update(file_name="/etc/passwd"), "escapes the image root"),
        (lambda d: d["images"].append(dict(d["images"][0])), "duplicate image id 1"),
        (lambda d: d["annotations"].append(dict(d["annotations"][0])),
         "duplicate annotation id 7"),
        (lambda d: d["annotations"][0].update(image_id=99), "refers to unknown image id 99"),
        (lambda d: d["images"][1].update(file_name="missing.jpg"),
         "missing.jpg: image file not found"),
        (lambda d: d["images"][0].update(width=61), "image is 60x40 but ann.json says 61x40"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "needs a bbox of 4 finite numbers"),
        (lambda d: d.update(categories=[{"id": 1, "name": "person"}]), "no category with"),
        (lambda d: d.pop("images"), "'images' must be a list"),
        # fields of the wrong type: one message naming the file and the field
        (lambda d: d["annotations"][0].update(num_keypoints=None),
         "ann.json: annotation 7 has num_keypoints None; it must be an integer >= 0"),
        (lambda d: d["annotations"][0].update(num_keypoints=-1), "has num_keypoints -1"),
        (lambda d: d["categories"][0].update(skeleton=[[1, "x"]]),
         "ann.json: person category skeleton must be a list of [joint, joint] pairs of integers, "
         "got [[1, 'x']]"),
        (lambda d: d["categories"][0].update(skeleton=[1, 2]), "skeleton must be a list of"),
        (lambda d: d["categories"][0].update(keypoints=list(range(17))),
         "ann.json: person category keypoints must be names (strings), got [0, 1, 2"),
        (lambda d: d["categories"][0].update(sigmas=["a"] * 17),
         "ann.json: person category sigmas must be a list of finite numbers"),
        (lambda d: d["images"][0].update(crowdIndex="high"),
         "ann.json: image 1 has crowdIndex 'high'; it must be a finite number >= 0"),
        (lambda d: d["annotations"][0].update(image_id=[1]), "refers to unknown image id [1]"),
        (lambda d: d["images"][0].update(width=50000, height=50000),
         "ann.json: image 1 is 50000x50000 pixels, more than the limit of 67,108,864"),
    ],
)
def test_bad_inputs(tmp_path: Path, tiny, edit, message: str) -> None:
    data, images = tiny
    data = copy.deepcopy(data)
    edit(data)
    with pytest.raises(DataError, match=None) as info:
        load(tmp_path, data, images)
    assert message in str(info.value), str(info.value)


def test_undecodable_image(tmp_path: Path, tiny) -> None:
    data, images = tiny
    (images / "b.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=r"b\.jpg: image does not decode"):
        load(tmp_path, data, images)
    load(tmp_path, data, images, "exists")  # existence-only check does not decode


def test_missing_and_malformed_json(tmp_path: Path, tiny) -> None:
    _, images = tiny
    with pytest.raises(DataError, match="nope.json: annotation file not found"):
        load_coco(tmp_path / "nope.json", images)
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(DataError, match="bad.json: malformed JSON"):
        load_coco(bad, images)
    bad.write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(DataError, match=r"bad\.json: malformed JSON \(nested too deeply\)"):
        load_coco(bad, images)


def test_a_huge_image_is_refused_from_its_header(tmp_path: Path, tiny) -> None:
    """A 1 MB PNG of 32000x32000 pixels would take 3 GB decoded: refused before decoding,
    as is one whose header claims more than OpenCV decodes."""
    data, images = tiny
    for name, (w, h) in {"big.png": (32000, 32000), "bigger.png": (50000, 50000)}.items():
        png_claiming(images / name, w, h)
        with pytest.raises(DataError) as info:
            read_image(images / name)
        assert str(info.value) == (f"{images / name}: image is {w}x{h} pixels, more than the "
                                   "limit of 67,108,864 (8192x8192)")
    data["images"][1].update(file_name="big.png")
    with pytest.raises(DataError, match=r"big\.png: image is 32000x32000 pixels"):
        load(tmp_path, data, images)


def test_a_preloaded_image_is_not_decoded_again(tmp_path: Path, tiny) -> None:
    _, images = tiny
    pixels = np.full((40, 60, 3), 7, np.uint8)
    with preloaded_image(images / "a.jpg", pixels):
        copy = read_image(images / "." / "a.jpg")
        assert (copy == 7).all() and copy is not pixels
        copy[:] = 0  # a reader's copy: the preloaded pixels stay as they were
        assert (read_image(images / "a.jpg") == 7).all()
    assert (read_image(images / "a.jpg") == 128).all()
