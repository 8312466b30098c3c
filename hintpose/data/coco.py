"""COCO person-keypoint loading and validation.

``load_coco`` reads one split (annotation JSON + image folder) and rejects, with one message
naming the file and the record, anything the rest of the pipeline could trip on: a missing
file, malformed JSON, keypoint arrays that are not 3*J long, duplicate ids, annotations of
unknown images, ``file_name`` values that escape the image root, images that are missing or
do not decode, images of more than ``MAX_IMAGE_PIXELS`` pixels (their records, and their
files' headers before anything is decoded), fields of the wrong type (``num_keypoints``,
``crowdIndex``, the category's keypoint names, skeleton and sigmas). The number of joints J
comes from the person category (17 for COCO, 14 for CrowdPose). Like HRNet, training uses only
persons with ``num_keypoints > 0`` and ``iscrowd == 0``; crowd regions stay in the GT so that
evaluation ignores detections on them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from hintpose.data.images import (  # noqa: F401 (re-exported: the dataset's image reader)
    MAX_IMAGE_PIXELS,
    check_pixels,
    complete_image_file,
    preloaded_image,
    read_image,
)
from hintpose.data.keypoints import keypoint_sigmas, skeleton_of
from hintpose.errors import DataError
from hintpose.io import finite_number, read_json, write_json
from hintpose.settings import shown

ImageCheck = Literal["decode", "exists", "none"]
MANIFEST = "dataset.json"
#: A person without ``area`` (CrowdPose's files) gets its box area times this, the OKS scale
#: of CrowdPose's own evaluation (``use_area=False``).
BOX_AREA_FACTOR = 0.53


def resolve_image_path(root: Path, file_name: str) -> Path:
    """``root / file_name``, refusing names that are absolute or climb out of ``root``."""
    pure = PurePosixPath(file_name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise DataError(f"file_name {file_name!r} escapes the image root {root}")
    return root / Path(*pure.parts)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass
class CocoPersons:
    """One validated split: image records by id, person annotations, the person category."""

    annotation_file: Path
    image_root: Path
    data: dict[str, Any]
    images: dict[int, dict[str, Any]]
    annotations: list[dict[str, Any]]
    category: dict[str, Any]
    num_joints: int
    _by_image: dict[int, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for ann in self.annotations:
            by_image[ann["image_id"]].append(ann)
        self._by_image = dict(by_image)

    @property
    def sigmas(self) -> np.ndarray:
        """The OKS sigmas of the dataset's keypoints (from its person category)."""
        return keypoint_sigmas(self.category, str(self.annotation_file))

    @property
    def skeleton(self) -> list[tuple[int, int]]:
        """1-based joint pairs to draw (from the person category, checked against J)."""
        return skeleton_of(self.category)

    def check_keypoints(self, names: Sequence[str], model: str | Path) -> None:
        """A model (its folder ``model``) predicts the keypoints ``names``: they must be this
        split's, or a DataError says which joints each side has."""
        if list(names) != list(self.category["keypoints"]):
            raise DataError(f"{model}: the model predicts {len(names)} joints "
                            f"({', '.join(names)}), but {self.annotation_file} has "
                            f"{self.num_joints} ({', '.join(self.category['keypoints'])}): "
                            "train it on this dataset")

    def image_path(self, image_id: int) -> Path:
        return resolve_image_path(self.image_root, self.images[image_id]["file_name"])

    def annotations_of(self, image_id: int) -> list[dict[str, Any]]:
        return self._by_image.get(image_id, [])

    def training_persons(self) -> list[dict[str, Any]]:
        """Persons HRNet trains on: not crowd, at least one labeled joint, a non-empty box
        after clipping to the image. Each gets ``clean_bbox`` (clipped, COCO x, y, w, h)."""
        persons = []
        for ann in self.annotations:
            if ann.get("iscrowd", 0) or ann["num_keypoints"] == 0:
                continue
            img = self.images[ann["image_id"]]
            box = clip_box(ann["bbox"], img["width"], img["height"])
            if box is not None:
                persons.append({**ann, "clean_bbox": box})
        return persons


def check_bbox(bbox: Any, where: str) -> list[float]:
    """A COCO box [x, y, w, h] of 4 finite numbers with w, h >= 0, as floats; anything else is
    a DataError starting with ``where``."""
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(finite_number, bbox))):
        raise DataError(f"{where} needs a bbox of 4 finite numbers [x, y, w, h], got {bbox!r}")
    if bbox[2] < 0 or bbox[3] < 0:
        raise DataError(f"{where} has a negative box size {bbox!r}")
    return [float(v) for v in bbox]


def clip_box(bbox: Iterable[float], width: int, height: int) -> list[float] | None:
    """Clip a COCO box to the image as HRNet does; None when nothing is left."""
    x, y, w, h = bbox
    x1, y1 = max(0.0, float(x)), max(0.0, float(y))
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if w * h <= 0 or x2 < x1 or y2 < y1:
        return None
    return [x1, y1, x2 - x1, y2 - y1]


def _person_category(data: dict[str, Any], where: Path) -> dict[str, Any]:
    cats = data.get("categories")
    if not isinstance(cats, list) or not cats:
        raise DataError(f"{where}: 'categories' must be a non-empty list")
    with_kpts = [c for c in cats if isinstance(c, dict) and isinstance(c.get("keypoints"), list)]
    person = [c for c in with_kpts if c.get("name") == "person"] or with_kpts
    if not person:
        raise DataError(f"{where}: no category with a 'keypoints' list (need a person category)")
    cat = person[0]
    if not _is_int(cat.get("id")) or not cat["keypoints"]:
        raise DataError(f"{where}: person category needs an integer id and keypoint names")
    if not all(isinstance(name, str) for name in cat["keypoints"]):
        raise DataError(f"{where}: person category keypoints must be names (strings), got "
                        f"{shown(cat['keypoints'])}")
    skeleton = cat.get("skeleton")
    if skeleton is not None and not (isinstance(skeleton, list) and all(
            isinstance(p, list) and len(p) == 2 and all(map(_is_int, p)) for p in skeleton)):
        raise DataError(f"{where}: person category skeleton must be a list of [joint, joint] "
                        f"pairs of integers, got {shown(skeleton)}")
    sigmas = cat.get("sigmas")
    if "sigmas" in cat and not (isinstance(sigmas, list) and all(map(finite_number, sigmas))):
        raise DataError(f"{where}: person category sigmas must be a list of finite numbers, "
                        f"got {shown(sigmas)}")
    return cat


def _validate_images(records: Any, where: Path) -> dict[int, dict[str, Any]]:
    if not isinstance(records, list):
        raise DataError(f"{where}: 'images' must be a list")
    images: dict[int, dict[str, Any]] = {}
    for rec in records:
        if not isinstance(rec, dict) or not _is_int(rec.get("id")):
            raise DataError(f"{where}: image record without an integer id: {str(rec)[:80]}")
        iid = rec["id"]
        if iid in images:
            raise DataError(f"{where}: duplicate image id {iid}")
        if not isinstance(rec.get("file_name"), str):
            raise DataError(f"{where}: image {iid} has no file_name")
        for key in ("width", "height"):
            if not _is_int(rec.get(key)) or rec[key] <= 0:
                raise DataError(f"{where}: image {iid} needs a positive integer {key}")
        check_pixels(rec["width"], rec["height"], f"{where}: image {iid}")
        crowd = rec.get("crowdIndex", 0.0)
        if not finite_number(crowd) or crowd < 0:
            raise DataError(f"{where}: image {iid} has crowdIndex {shown(crowd)}; it must be a "
                            "finite number >= 0")
        images[iid] = rec
    return images


def _validate_annotations(
    records: Any, images: dict[int, dict], cat_id: int, num_joints: int, where: Path
) -> list[dict[str, Any]]:
    if not isinstance(records, list):
        raise DataError(f"{where}: 'annotations' must be a list")
    seen: set[int] = set()
    persons = []
    for ann in records:
        if not isinstance(ann, dict) or not _is_int(ann.get("id")):
            raise DataError(f"{where}: annotation without an integer id: {str(ann)[:80]}")
        aid = ann["id"]
        if aid in seen:
            raise DataError(f"{where}: duplicate annotation id {aid}")
        seen.add(aid)
        if ann.get("category_id") != cat_id:
            continue
        if not _is_int(ann.get("image_id")) or ann["image_id"] not in images:
            raise DataError(f"{where}: annotation {aid} refers to unknown image id "
                            f"{shown(ann.get('image_id'))}")
        bbox = check_bbox(ann.get("bbox"), f"{where}: annotation {aid}")
        if ann.get("iscrowd", 0) not in (0, 1):
            raise DataError(f"{where}: annotation {aid} has iscrowd {shown(ann.get('iscrowd'))}")
        kpts = ann.get("keypoints")
        if kpts is None and ann.get("iscrowd", 0):
            kpts = [0] * (3 * num_joints)
        if not (isinstance(kpts, list) and len(kpts) == 3 * num_joints
                and all(map(finite_number, kpts))):
            got = (f"{len(kpts)} values" if isinstance(kpts, list) and len(kpts) != 3 * num_joints
                   else "a value that is not a finite number" if isinstance(kpts, list)
                   else repr(kpts)[:40])
            raise DataError(f"{where}: annotation {aid} keypoints must be {3 * num_joints} "
                            f"finite numbers (3 x {num_joints} joints), got {got}")
        area = ann.get("area", bbox[2] * bbox[3] * BOX_AREA_FACTOR)
        if not finite_number(area) or area < 0:
            raise DataError(f"{where}: annotation {aid} has area {shown(area)}")
        labeled = int(sum(1 for v in kpts[2::3] if v > 0))
        num_keypoints = ann.get("num_keypoints", labeled)
        if not _is_int(num_keypoints) or num_keypoints < 0:
            raise DataError(f"{where}: annotation {aid} has num_keypoints {shown(num_keypoints)};"
                            " it must be an integer >= 0")
        persons.append({**ann, "keypoints": kpts, "iscrowd": ann.get("iscrowd", 0),
                        "num_keypoints": num_keypoints, "area": area})
    return persons


def _check_images(coco: CocoPersons, check: ImageCheck) -> None:
    if check == "none":
        return
    for iid, rec in tqdm(coco.images.items(), desc=f"check images ({check})",
                         disable=len(coco.images) < 500, leave=False):
        path = coco.image_path(iid)
        if check == "exists":
            if not path.is_file():
                raise DataError(f"{path}: image file not found (image id {iid})")
            continue
        h, w = read_image(path).shape[:2]
        if not complete_image_file(path):
            raise DataError(f"{path}: image file is truncated (image id {iid})")
        if (w, h) != (rec["width"], rec["height"]):
            raise DataError(f"{path}: image is {w}x{h} but {coco.annotation_file.name} says "
                            f"{rec['width']}x{rec['height']} (image id {iid})")


def load_coco(
    annotation_file: str | Path, image_root: str | Path, check_images: ImageCheck = "exists"
) -> CocoPersons:
    """Load and validate a COCO person-keypoint split (see the module docstring)."""
    annotation_file, image_root = Path(annotation_file), Path(image_root)
    data = read_json(annotation_file, "annotation file")
    if not isinstance(data, dict):
        raise DataError(f"{annotation_file}: expected a JSON object with images/annotations")
    cat = _person_category(data, annotation_file)
    num_joints = len(cat["keypoints"])
    images = _validate_images(data.get("images"), annotation_file)
    for iid, rec in images.items():
        try:
            resolve_image_path(image_root, rec["file_name"])
        except DataError as exc:
            raise DataError(f"{annotation_file}: image {iid}: {exc}") from None
    anns = _validate_annotations(data.get("annotations"), images, cat["id"], num_joints,
                                 annotation_file)
    coco = CocoPersons(annotation_file, image_root, data, images, anns, cat, num_joints)
    _check_images(coco, check_images)
    return coco


# --------------------------------------------------------------------------- prepared dataset


def write_manifest(dataset_dir: Path, splits: dict[str, tuple[str, str]], kind: str) -> Path:
    """Record where each split's annotations and images are (paths relative to the dataset
    folder, or absolute for an imported dataset whose images stay where they are)."""
    manifest = {
        "kind": kind,
        "splits": {s: {"annotations": a, "images": i} for s, (a, i) in splits.items()},
    }
    path = dataset_dir / MANIFEST
    write_json(path, manifest)
    return path


def load_split(
    dataset_dir: str | Path, split: str, check_images: ImageCheck = "none"
) -> CocoPersons:
    """Load one split of a dataset written by the ``prepare`` stage."""
    dataset_dir = Path(dataset_dir)
    manifest = read_json(dataset_dir / MANIFEST, "dataset manifest (run the prepare stage)")
    try:
        entry = manifest["splits"][split]
        ann, img = entry["annotations"], entry["images"]
    except (KeyError, TypeError):
        raise DataError(f"{dataset_dir / MANIFEST}: no split {split!r}") from None
    return load_coco(dataset_dir / ann, dataset_dir / img, check_images)


def result_records(data: Any, source: str, image_ids: Collection[int], category_id: int,
                   what: str, images_in: str = "the split") -> Iterator[tuple[str, dict]]:
    """The entries of a COCO results list (detections or keypoints) as (``"<source>: entry
    i"``, entry), each checked to be an object with a known integer ``image_id`` and, when it
    has one, the person ``category_id`` and a finite ``score``; anything else is a DataError
    naming ``source`` and the entry."""
    if not isinstance(data, list):
        raise DataError(f"{source}: {what} must be a JSON list of records, got a "
                        f"{type(data).__name__}")
    for i, rec in enumerate(data):
        where = f"{source}: entry {i}"
        if not isinstance(rec, dict):
            raise DataError(f"{where} is not a JSON object: {str(rec)[:80]}")
        iid = rec.get("image_id")
        if isinstance(iid, bool) or not isinstance(iid, int) or iid not in image_ids:
            raise DataError(f"{where} refers to unknown image id {iid!r} (not in {images_in})")
        if rec.get("category_id", category_id) != category_id:
            raise DataError(f"{where} has category_id {rec['category_id']!r}; only persons "
                            f"(category {category_id}) are expected")
        if not finite_number(rec.get("score")):
            raise DataError(f"{where} needs a finite score, got {rec.get('score')!r}")
        yield where, rec


def validate_keypoint_results(data: Any, source: str, image_ids: Collection[int],
                              category_id: int, num_joints: int,
                              images_in: str = "the split") -> list[dict[str, Any]]:
    """COCO keypoint results: :func:`result_records` with 3 x ``num_joints`` finite
    ``keypoints`` each; anything else is a DataError naming ``source`` and the entry."""
    for where, rec in result_records(data, source, image_ids, category_id, "keypoint results",
                                     images_in):
        kpts = rec.get("keypoints")
        if not (isinstance(kpts, list) and len(kpts) == 3 * num_joints
                and all(map(finite_number, kpts))):
            got = len(kpts) if isinstance(kpts, list) else repr(kpts)[:40]
            raise DataError(f"{where} needs {3 * num_joints} finite keypoint values (3 x "
                            f"{num_joints} joints), got {got}")
    return data
