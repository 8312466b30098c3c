"""The ``prepare`` stage's work: build the dataset folder (synthetic or imported COCO)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from hintpose.data.coco import CocoPersons, load_coco, load_split, write_manifest
from hintpose.data.crowd import CROWD_LEVELS, crowd_index, crowd_level
from hintpose.data.params import DatasetParams
from hintpose.data.synthetic import generate_split
from hintpose.errors import ConfigError, DataError
from hintpose.io import finish_dir, start_dir

SPLITS = ("train", "val")


def annotation_name(split: str) -> str:
    return f"annotations/person_keypoints_{split}.json"


def write_json(path: Path, data: Any) -> None:
    """Compact, byte-reproducible JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, separators=(",", ":")))


def _import_coco(tmp: Path, params: DatasetParams, root: Path) -> dict[str, tuple[str, str]]:
    splits = {}
    for split in SPLITS:
        ann = getattr(params.coco, f"{split}_annotations")
        img = getattr(params.coco, f"{split}_images")
        for key, value in ((f"{split}_annotations", ann), (f"{split}_images", img)):
            if not value:
                raise ConfigError(f"params.yaml: dataset.coco.{key} is required when "
                                  "dataset.kind is coco")
        img_root = (root / img).resolve()
        coco = load_coco(root / ann, img_root, params.coco.verify_images)
        if not coco.training_persons():
            raise DataError(f"{root / ann}: no person with labeled keypoints to train or "
                            "evaluate on")
        data = dict(coco.data)
        # the validated persons: what every stage reads (an ``area`` filled in where the
        # file has none, as CrowdPose's, which MMDetection's loader needs)
        data["annotations"] = coco.annotations
        data["images"] = [
            {**rec, "crowdIndex": rec.get("crowdIndex", crowd_index(coco.annotations_of(iid)))}
            for iid, rec in coco.images.items()
        ]
        write_json(tmp / annotation_name(split), data)
        splits[split] = (annotation_name(split), str(img_root))
    return splits


def build_dataset(out_dir: Path, params: DatasetParams, root: Path = Path("."),
                  progress: bool = True) -> dict[str, CocoPersons]:
    """Write the dataset for ``out_dir`` (images, ``annotations/person_keypoints_{train,val}
    .json`` and a manifest) into its :func:`hintpose.io.partial_dir`, validate it and return
    the loaded splits; :func:`hintpose.io.finish_dir` moves it in once every other output of
    the stage is ready too. ``root`` resolves the relative paths of an imported dataset. A
    failure removes the partial folder."""
    tmp = start_dir(out_dir)
    try:
        if params.kind == "synthetic":
            counts = {"train": params.train_images, "val": params.val_images}
            splits = {}
            for split in SPLITS:
                data = generate_split(tmp, split, counts[split], params.seed, params.synthetic,
                                      progress=progress)
                write_json(tmp / annotation_name(split), data)
                splits[split] = (annotation_name(split), "images")
        else:
            splits = _import_coco(tmp, params, root)
        write_manifest(tmp, splits, params.kind)
        check = "exists" if params.kind == "synthetic" else "none"
        return {split: load_split(tmp, split, check) for split in SPLITS}
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def prepare_dataset(out_dir: Path, params: DatasetParams, root: Path = Path("."),
                    progress: bool = True) -> dict[str, CocoPersons]:
    """:func:`build_dataset`, moved into ``out_dir`` at once; the splits loaded from there."""
    build_dataset(out_dir, params, root, progress)
    finish_dir(out_dir)
    return {split: load_split(out_dir, split) for split in SPLITS}


def dataset_stats(coco: CocoPersons) -> dict[str, float]:
    """Size, crowding and person-size figures of a split (for metrics/dataset.json)."""
    persons = [a for a in coco.annotations if not a.get("iscrowd", 0) and a["num_keypoints"] > 0]
    indices = np.array([rec.get("crowdIndex", crowd_index(coco.annotations_of(iid)))
                        for iid, rec in coco.images.items()])
    stats: dict[str, float] = {
        "images": len(coco.images),
        "persons": len(persons),
        "persons_per_image": len(persons) / max(1, len(coco.images)),
        "crowd_index_mean": float(indices.mean()) if len(indices) else 0.0,
    }
    levels = [crowd_level(v) for v in indices]
    for name in CROWD_LEVELS:
        stats[f"crowd_{name}"] = levels.count(name) / max(1, len(levels))
    areas = np.array([a["area"] for a in persons if "area" in a])
    if len(areas):
        stats["size_small"] = float((areas < 32**2).mean())
        stats["size_medium"] = float(((areas >= 32**2) & (areas <= 96**2)).mean())
        stats["size_large"] = float((areas > 96**2).mean())
    return stats


def dataset_digest(folder: Path) -> dict[str, Any]:
    """The md5 of every file under ``folder`` (POSIX paths relative to it, sorted) and one md5
    over that listing.

    The stages that read the dataset depend on this small file instead of the folder: DVC
    then hashes the folder's files once per ``dvc repro`` (as the prepare stage's output), not
    once for each stage that reads it. Only the prepare stage writes both, so they change
    together; a hand edit of the folder makes DVC re-run prepare, which rewrites both."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with path.open("rb") as f:
            files[path.relative_to(folder).as_posix()] = hashlib.file_digest(f, "md5").hexdigest()
    listing = "".join(f"{md5}  {name}\n" for name, md5 in files.items())
    return {"md5": hashlib.md5(listing.encode()).hexdigest(), "files": files}
