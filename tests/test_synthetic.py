"""The synthetic crowded-people generator: determinism, COCO validity, visibility and crowding."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import hintpose.data.figures as figures
from hintpose.data.crowd import crowd_index
from hintpose.data.figures import sample_figure
from hintpose.data.keypoints import FLIP_PAIRS, KEYPOINT_NAMES, SKELETON, person_category
from hintpose.data.params import SyntheticConfig
from hintpose.data.synthetic import generate_image, generate_split
from hintpose.errors import ConfigError

#: The harder setting these checks were calibrated on (params.smoke.yaml's; the defaults, which
#: equal params.yaml, draw persons of 0.3-1.0 image heights, 5 % out of frame, 4 distractors,
#: in the plain look).
CFG = SyntheticConfig(person_height_min=0.25, person_height_max=1.4, out_of_frame=0.15,
                      distractors=14, look="textured")


@pytest.fixture(scope="module")
def small_split(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synthetic_small")
    return root, generate_split(root, "train", 24, seed=3, cfg=CFG, progress=False)


@pytest.fixture(scope="module")
def val_split(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The reference split: CFG, val, 200 images, seed 1."""
    root = tmp_path_factory.mktemp("synthetic_val")
    return generate_split(root, "val", 200, seed=1, cfg=CFG, progress=False)


def test_keypoint_constants() -> None:
    assert len(KEYPOINT_NAMES) == 17 and KEYPOINT_NAMES[0] == "nose"
    for a, b in FLIP_PAIRS:
        assert KEYPOINT_NAMES[a].startswith("left_") and KEYPOINT_NAMES[b].startswith("right_")
        assert KEYPOINT_NAMES[a][5:] == KEYPOINT_NAMES[b][6:]
    cat = person_category()
    assert cat["id"] == 1 and cat["name"] == "person" and cat["supercategory"] == "person"
    assert cat["skeleton"] == [list(p) for p in SKELETON] and len(cat["skeleton"]) == 19


def test_config_ranges_and_cross_checks() -> None:
    for f in dataclasses.fields(SyntheticConfig):
        assert f.metadata or f.type == "bool", f"{f.name} has no valid range"
    with pytest.raises(ConfigError, match="persons_min"):
        SyntheticConfig(persons_min=5, persons_max=3)
    with pytest.raises(ConfigError, match="person_height_min"):
        SyntheticConfig(person_height_min=0.9, person_height_max=0.5)


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        data = generate_split(tmp_path / name, "val", 6, seed=7, cfg=CFG, progress=False)
        files = sorted((tmp_path / name / "images" / "val").iterdir())
        runs.append((json.dumps(data), [(p.name, p.read_bytes()) for p in files]))
    assert runs[0][0] == runs[1][0]
    assert runs[0][1] == runs[1][1] and len(runs[0][1]) == 6
    other = generate_split(tmp_path / "c", "val", 2, seed=8, cfg=CFG, progress=False)
    assert json.dumps(other["annotations"]) != json.dumps(json.loads(runs[0][0])["annotations"])


def test_any_image_regenerates_alone(small_split: tuple[Path, dict]) -> None:
    _, data = small_split
    image, anns = generate_image(np.random.default_rng([3, zlib.crc32(b"train"), 4]), CFG)
    assert image.shape == (CFG.image_height, CFG.image_width, 3) and image.dtype == np.uint8
    stored = [{k: v for k, v in a.items() if k not in ("id", "image_id")}
              for a in data["annotations"] if a["image_id"] == 5]
    assert stored == anns


def test_coco_structure_and_gt_as_results_ap_is_one(small_split: tuple[Path, dict],
                                                    tmp_path: Path) -> None:
    root, data = small_split
    assert [im["id"] for im in data["images"]] == list(range(1, 25))
    assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])
    for im in data["images"]:
        assert (root / "images" / im["file_name"]).is_file()
        assert im["file_name"] == f"train/{im['id']:06d}.jpg"
        anns = [a for a in data["annotations"] if a["image_id"] == im["id"]]
        assert im["crowdIndex"] == pytest.approx(crowd_index(anns), abs=1e-6)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"],
                    "score": 1.0} for a in data["annotations"] if a["num_keypoints"] > 0]
        ev = COCOeval(gt, gt.loadRes(results), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)
    assert ev.stats[5] == pytest.approx(1.0)


def test_visibility_rules(small_split: tuple[Path, dict]) -> None:
    _, data = small_split
    w, h = CFG.image_width, CFG.image_height
    counts = np.zeros(3, int)
    for ann in data["annotations"]:
        k = np.asarray(ann["keypoints"], dtype=np.float64).reshape(17, 3)
        v = k[:, 2]
        assert set(v) <= {0, 1, 2}
        assert ann["num_keypoints"] == int((v > 0).sum())
        assert np.all(k[v == 0, :2] == 0)
        assert np.all((k[v > 0, 0] >= 0) & (k[v > 0, 0] <= w - 1))
        assert np.all((k[v > 0, 1] >= 0) & (k[v > 0, 1] <= h - 1))
        m = mask_utils.decode(ann["segmentation"])
        assert ann["area"] == m.sum() >= CFG.min_area
        assert ann["bbox"] == pytest.approx(list(mask_utils.toBbox(ann["segmentation"])))
        assert ann["iscrowd"] == 0 and ann["category_id"] == 1
        if ann["num_keypoints"] == 0:
            assert ann["area"] >= CFG.min_area_unlabeled
        # A visible joint lies on the person's visible mask, hence inside its tight box.
        px = np.floor(k[v == 2, 0] + 0.5).astype(int)
        py = np.floor(k[v == 2, 1] + 0.5).astype(int)
        assert np.all(m[py, px] == 1)
        bx, by, bw, bh = ann["bbox"]
        assert np.all((px >= bx) & (px <= bx + bw - 1) & (py >= by) & (py <= by + bh - 1))
        counts += np.bincount(v.astype(int), minlength=3)
    assert counts[1] > 0.1 * counts.sum() and counts[2] > 0.3 * counts.sum()


def test_crowding_of_reference_val_split(val_split: dict) -> None:
    ci = np.array([im["crowdIndex"] for im in val_split["images"]])
    assert len(ci) == 200
    assert (ci >= 0.2).mean() >= 0.30
    assert (ci >= 0.8).mean() >= 0.10
    assert 0.15 <= (ci < 0.2).mean() <= 0.45


def test_person_sizes_span_coco_ranges(val_split: dict) -> None:
    area = np.array([a["area"] for a in val_split["annotations"] if a["num_keypoints"] > 0])
    assert (area < 32**2).mean() > 0.05
    assert ((area >= 32**2) & (area <= 96**2)).mean() > 0.3
    assert (area > 96**2).mean() > 0.05


def test_facing_decides_labels_and_sides() -> None:
    rng = np.random.default_rng(0)
    unlabeled = {"front": set(), "back": {0, 1, 2}, "left": {2, 4}, "right": {1, 3}}
    for facing, missing in unlabeled.items():
        for _ in range(30):
            fig = sample_figure(rng, 150.0, facing)
            assert fig.facing == facing
            assert set(np.flatnonzero(~fig.labeled)) == missing
            x = fig.joints[:, 0]
            if facing == "front":  # the person's left side is on the image right
                assert x[5] > x[6] and x[11] > x[12]
            elif facing == "back":
                assert x[5] < x[6] and x[11] < x[12]
            elif facing == "left":  # left side towards the camera: faces the image left
                assert x[0] < x[3]
            else:
                assert x[0] > x[4]


def test_back_facing_persons_have_no_face_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(figures, "_FACING_PROB", (0.0, 1.0, 0.0, 0.0))
    ears = 0
    for i in range(8):
        _, anns = generate_image(np.random.default_rng([5, i]), CFG)
        for ann in anns:
            v = np.asarray(ann["keypoints"]).reshape(17, 3)[:, 2]
            assert np.all(v[:3] == 0)
            ears += int((v[3:5] > 0).sum())
    assert ears > 0


def test_plain_look_changes_only_the_look() -> None:
    """``look: plain`` draws the same persons at the same places (same annotations, same
    crowding) in plain colours, without the distractor shapes and noise: on the persons
    the pixels differ, and where the textured image is plain background they are equal."""
    plain = dataclasses.replace(CFG, look="plain", blur_sigma=0.0)
    textured = dataclasses.replace(CFG, look="textured", noise_std=0.0, blur_sigma=0.0)
    img_t, anns_t = generate_image(np.random.default_rng(3), textured)
    img_p, anns_p = generate_image(np.random.default_rng(3), plain)
    assert json.dumps(anns_t) == json.dumps(anns_p) and anns_t
    differ = (img_t != img_p).any(axis=2)
    on_persons = np.zeros(differ.shape, bool)
    for ann in anns_t:
        on_persons |= mask_utils.decode(ann["segmentation"]).astype(bool)
    assert differ[on_persons].mean() > 0.2  # textures gone
    assert 0.0 < differ[~on_persons].mean() < 0.9  # distractor shapes gone, background kept


#: Environments that make numpy, OpenCV (its own dispatch and IPP), OpenBLAS, glibc's libm and
#: libjpeg-turbo take the code paths of other x86-64 CPU kinds: an AVX2 machine and an
#: SSE-only one (the baseline). Features this machine lacks are skipped with a warning.
_NPY_AVX512 = "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL"
_CPU_KINDS = {
    "avx2": {"NPY_DISABLE_CPU_FEATURES": _NPY_AVX512, "OPENCV_CPU_DISABLE": "AVX512-SKX",
             "OPENCV_IPP": "avx2", "OPENBLAS_CORETYPE": "Haswell"},
    "sse": {"NPY_DISABLE_CPU_FEATURES": f"{_NPY_AVX512} AVX2 FMA3 F16C AVX SSE42 SSE41 POPCNT "
                                        "SSSE3",
            "OPENCV_CPU_DISABLE": "AVX512-SKX,AVX512-COMMON,AVX512F,AVX2,FMA3,AVX,FP16,SSE4.2,"
                                  "SSE4.1,POPCNT,SSSE3",
            "OPENCV_IPP": "sse42", "OPENBLAS_CORETYPE": "Prescott",
            "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F,-AVX2,-FMA,-AVX", "JSIMD_FORCENONE": "1"},
}
_DIGESTS = """
import hashlib, json, sys, zlib
import cv2, numpy as np
from numpy.core._multiarray_umath import __cpu_features__ as npy
from hintpose.data.figures import sample_figure
from hintpose.data.params import SyntheticConfig
from hintpose.data.synthetic import generate_image
h = lambda *parts: hashlib.sha256(b"".join(parts)).hexdigest()[:16]
out = {"npy_avx2": npy["AVX2"], "cv2_avx2": cv2.checkHardwareSupport(11), "images": []}
for cfg in json.loads(sys.argv[1]):
    cfg = SyntheticConfig(**cfg)
    for i in range(int(sys.argv[2])):
        img, anns = generate_image(np.random.default_rng([1, zlib.crc32(b"val"), i]), cfg)
        jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])[1]
        out["images"].append([h(img.tobytes()), h(jpg.tobytes()), h(json.dumps(anns).encode())])
# the geometry at full precision: a last-bit difference rarely reaches the rounded outputs
figs = [sample_figure(np.random.default_rng([2, i]), 150.0) for i in range(200)]
out["figures"] = h(*(np.array([*f.extent, *f.texture, *f.light]).tobytes() + f.points.tobytes()
                     + f.palette.tobytes() for f in figs))
print(json.dumps(out))
"""


def _digests(env: dict[str, str], cfgs: list[SyntheticConfig], n: int) -> dict:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", _DIGESTS, json.dumps([dataclasses.asdict(c) for c in cfgs]), str(n)],
        env={**os.environ, "PYTHONPATH": str(root), **env}, cwd=root, capture_output=True,
        text=True, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def test_same_bits_on_every_cpu_kind() -> None:
    """Pixels, JPEG bytes and annotations do not depend on the SIMD code paths numpy, OpenCV,
    OpenBLAS, libm and libjpeg pick for the CPU: restricting them changes nothing."""
    cfgs = [CFG, SyntheticConfig()]  # textured (blotches, stripes, noise) and the default plain
    ref = _digests({}, cfgs, 5)
    for kind, env in _CPU_KINDS.items():
        got = _digests(env, cfgs, 5)
        if kind == "sse":  # the restriction took effect (where the machine has AVX2 at all)
            assert not got["npy_avx2"] and not got["cv2_avx2"]
        bad = [(i, [what for what, x, y in zip(("pixels", "jpeg", "annotations"), a, b,
                                                  strict=True) if x != y])
               for i, (a, b) in enumerate(zip(ref["images"], got["images"], strict=True))
               if a != b]
        assert not bad, f"{kind}: images (index, what) {bad} of {len(ref['images'])} differ"
        assert got["figures"] == ref["figures"], f"{kind}: the figures' geometry differs"
