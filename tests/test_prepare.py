"""The dataset digest the stages reading the dataset depend on (instead of its folder)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hintpose.data.prepare import dataset_digest


def _write(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_digest_lists_every_file_with_its_md5(tmp_path: Path) -> None:
    files = {"annotations/person_keypoints_val.json": b"{}", "images/val/1.jpg": b"\xff\xd8",
             "dataset.json": b"{\"kind\": \"synthetic\"}"}
    digest = dataset_digest(_write(tmp_path / "a", files))
    assert digest["files"] == {name: hashlib.md5(data).hexdigest()
                               for name, data in sorted(files.items())}
    assert list(digest["files"]) == sorted(files)
    # the same content elsewhere gives the same digest; a changed byte or an extra file does not
    assert dataset_digest(_write(tmp_path / "b", files)) == digest
    changed = dataset_digest(_write(tmp_path / "c", {**files, "images/val/1.jpg": b"\xff\xd9"}))
    assert changed["md5"] != digest["md5"]
    extra = dataset_digest(_write(tmp_path / "d", {**files, "images/val/2.jpg": b""}))
    assert extra["md5"] != digest["md5"]
    # a renamed file with the same bytes changes it too
    moved = {("images/val/3.jpg" if k == "images/val/1.jpg" else k): v for k, v in files.items()}
    assert dataset_digest(_write(tmp_path / "e", moved))["md5"] != digest["md5"]
