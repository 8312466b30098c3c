"""Bad inputs and faults end in one ``error:`` line naming the culprit, a non-zero exit, and the
earlier outputs as they were (issue: CrowdPose and the failures that still broke)."""

from __future__ import annotations

import errno
import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from conftest import png_claiming

from hintpose.data.keypoints import person_category
from hintpose.errors import DataError
from hintpose.io import save_torch, write_atomic
from hintpose.models.folder import load_network

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ("dataset/marker.txt", "digest.json", "details.json", "sheet.png")


def coco_files(folder: Path) -> dict:
    """A valid two-image COCO keypoint split (JPEGs) in ``folder``; returns its JSON."""
    (folder / "images").mkdir(parents=True)
    images, anns = [], []
    rng = np.random.default_rng(0)
    for i in (1, 2):
        cv2.imwrite(str(folder / "images" / f"{i}.jpg"), rng.integers(0, 255, (96, 128, 3),
                                                                        dtype=np.uint8))
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 128, "height": 96})
        kpts = np.zeros((17, 3))
        kpts[:, :2] = rng.uniform(30, 60, (17, 2))
        kpts[:, 2] = 2
        anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [20, 20, 50, 60],
                     "area": 3000, "iscrowd": 0, "num_keypoints": 17,
                     "keypoints": kpts.round(1).ravel().tolist()})
    return {"images": images, "annotations": anns, "categories": [person_category()]}


def run_prepare(tmp: Path, data: dict | str, verify: str = "decode", edit_params=None,
                params_text: str | None = None) -> str:
    """Write ``data`` (or that JSON text) as both splits, run the prepare stage over earlier
    outputs; the last line of the stage's stderr (it must fail with one error line)."""
    (tmp / "ann.json").write_text(data if isinstance(data, str) else json.dumps(data))
    params = yaml.safe_load((ROOT / "params.smoke.yaml").read_text())
    params["dataset"]["kind"] = "coco"
    params["dataset"]["coco"] = {
        "train_annotations": str(tmp / "ann.json"), "train_images": str(tmp / "images"),
        "val_annotations": str(tmp / "ann.json"), "val_images": str(tmp / "images"),
        "verify_images": verify}
    if edit_params is not None:
        edit_params(params)
    (tmp / "params.yaml").write_text(yaml.safe_dump(params) + (params_text or ""))
    out = tmp / "out"
    for name in OUTPUTS:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("earlier")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "stages/prepare.py"), "--params", str(tmp / "params.yaml"),
         "--out", str(out / "dataset"), "--digest", str(out / "digest.json"),
         "--details", str(out / "details.json"), "--sheet", str(out / "sheet.png")],
        capture_output=True, text=True, cwd=tmp)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for name in OUTPUTS:  # every earlier output untouched, nothing half-built left over
        assert (out / name).read_text() == "earlier", name
    assert not list(out.glob("*.partial")), "a partial folder was left behind"
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[-1]


def nan_bbox(data: dict, tmp: Path) -> None:
    data["annotations"][1]["bbox"][2] = math.nan


def inf_keypoint(data: dict, tmp: Path) -> None:
    data["annotations"][0]["keypoints"][4] = math.inf


def truncated_jpeg(data: dict, tmp: Path) -> None:
    path = tmp / "images" / "2.jpg"
    path.write_bytes(path.read_bytes()[:-400])


def corrupt_image(data: dict, tmp: Path) -> None:
    (tmp / "images" / "2.jpg").write_bytes(b"not an image at all")


def no_annotations(data: dict, tmp: Path) -> None:
    data["annotations"] = []


def escaping_path(data: dict, tmp: Path) -> None:
    data["images"][0]["file_name"] = "../../etc/passwd"


def huge_png(data: dict, tmp: Path) -> None:
    png_claiming(tmp / "images" / "2.png", 32000, 32000)
    data["images"][1]["file_name"] = "2.png"


def huge_record(data: dict, tmp: Path) -> None:
    data["images"][1].update(width=50000, height=50000)


def null_num_keypoints(data: dict, tmp: Path) -> None:
    data["annotations"][0]["num_keypoints"] = None


def text_in_skeleton(data: dict, tmp: Path) -> None:
    data["categories"][0]["skeleton"] = [[1, "x"]]


def text_crowd_index(data: dict, tmp: Path) -> None:
    data["images"][0]["crowdIndex"] = "high"


PREPARE_CASES = {
    # name: (break the data, verify_images, the message, which must name the culprit)
    "NaN bbox": (nan_bbox, "decode", r"ann\.json: annotation 2 needs a bbox of 4 finite"),
    "inf keypoint": (inf_keypoint, "decode",
                     r"ann\.json: annotation 1 keypoints must be 51 finite numbers .* not a "
                     r"finite number"),
    "truncated JPEG": (truncated_jpeg, "decode", r"2\.jpg: image file is truncated"),
    "corrupt image, files only checked for existence": (
        corrupt_image, "exists", r"2\.jpg: image does not decode"),
    "no annotated person": (no_annotations, "decode",
                            r"ann\.json: no person with labeled keypoints"),
    "path escaping the image root": (escaping_path, "decode",
                                     r"file_name '\.\./\.\./etc/passwd' escapes the image root"),
    "a 32000x32000 PNG": (huge_png, "decode", r"2\.png: image is 32000x32000 pixels, more than "
                          r"the limit of 67,108,864 \(8192x8192\)$"),
    "a record of 50000x50000": (huge_record, "exists",
                                r"ann\.json: image 2 is 50000x50000 pixels, more than the limit"),
    "num_keypoints null": (null_num_keypoints, "decode",
                           r"ann\.json: annotation 1 has num_keypoints None; it must be an "
                           r"integer >= 0$"),
    "a skeleton [[1, 'x']]": (text_in_skeleton, "decode",
                              r"ann\.json: person category skeleton must be a list of \[joint, "
                              r"joint\] pairs of integers, got \[\[1, 'x'\]\]$"),
    "crowdIndex 'high'": (text_crowd_index, "decode",
                          r"ann\.json: image 1 has crowdIndex 'high'; it must be a finite "
                          r"number >= 0$"),
}


@pytest.mark.parametrize("case", sorted(PREPARE_CASES))
def test_prepare_refuses_bad_data_and_keeps_earlier_outputs(case: str, tmp_path: Path) -> None:
    breaker, verify, message = PREPARE_CASES[case]
    data = coco_files(tmp_path)
    breaker(data, tmp_path)
    line = run_prepare(tmp_path, data, verify)
    assert __import__("re").search(message, line), line


def test_a_100000_level_nested_json_is_one_error(tmp_path: Path) -> None:
    coco_files(tmp_path)
    line = run_prepare(tmp_path, '{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert line == f"error: {tmp_path / 'ann.json'}: malformed JSON (nested too deeply)", line


#: A YAML alias bomb (billion laughs: 9^9 strings) under a known key, as the end of params.
ALIAS_BOMB = "".join(
    f"  {k}: &{k} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, k in zip([""] + list("abcdefgh"), "abcdefghi", strict=True))

PARAMS_CASES = {
    # name: (params.yaml edit, YAML text appended, the exact error line)
    "input width 100000": (
        lambda p: p["pose"]["data"].update(input_width=100_000), None,
        "error: params.yaml: pose.data.input_width must be <= 2048, got 100000"),
    "a billion train images": (
        lambda p: p["dataset"].update(train_images=1_000_000_000), None,
        "error: params.yaml: dataset.train_images must be <= 1000000, got 1000000000"),
    "an alias bomb as runtime": (
        lambda p: p.pop("runtime"), "runtime:\n" + ALIAS_BOMB.replace("  i:", "  procs:"), None),
    "an infinite lr": (
        lambda p: p["pose"]["train"].update(lr=math.inf), None,
        "error: params.yaml: pose.train.lr must be a finite number, got inf"),
}


@pytest.mark.parametrize("case", sorted(PARAMS_CASES))
def test_bad_params_are_one_short_error(case: str, tmp_path: Path) -> None:
    edit, text, message = PARAMS_CASES[case]
    line = run_prepare(tmp_path, coco_files(tmp_path), edit_params=edit, params_text=text)
    assert len(line) < 300, line[:300]
    if message is None:  # the bomb: refused before it is expanded
        message = (f"error: {tmp_path / 'params.yaml'}: its YAML expands to more than 100,000 "
                   "values (aliases of aliases: an alias bomb?); write the values out")
    assert line == message


def test_a_full_disk_is_one_error_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    target.write_text("earlier")

    def full(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DataError, match=r"model\.pt: cannot be written \(No space left"):
        write_atomic(target, full)
    assert target.read_text() == "earlier" and sorted(p.name for p in tmp_path.iterdir()) == [
        "model.pt"]


def test_a_truncated_checkpoint_is_named_as_such(tmp_path: Path) -> None:
    net = torch.nn.Linear(2, 2)
    save_torch(net.state_dict(), tmp_path / "model.pt")
    (tmp_path / "model.json").write_text("{}")
    data = (tmp_path / "model.pt").read_bytes()
    (tmp_path / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"model\.pt: not a readable state dict \(truncated"):
        load_network(tmp_path, lambda config: torch.nn.Linear(2, 2), "test net", "train")


def test_scoring_names_the_results_file_and_checks_the_category(tmp_path: Path) -> None:
    from hintpose.scoring.results import score_results

    gt = coco_files(tmp_path)
    perfect = [{"image_id": a["image_id"], "keypoints": a["keypoints"], "score": 0.9}
               for a in gt["annotations"]]
    scores = score_results(gt, perfect, "m", "det", "results_det.json")  # no category_id
    assert scores["AP"] == pytest.approx(1.0)
    result = perfect[0]
    with pytest.raises(DataError, match=r"results_det\.json: entry 0 has category_id 7"):
        score_results(gt, [{**result, "category_id": 7}], "m", "det", "results_det.json")
    with pytest.raises(DataError, match=r"results_det\.json: entry 0 refers to unknown image"):
        score_results(gt, [{**result, "image_id": 99}], "m", "det", "results_det.json")


def run_infer_on(model_json: dict, tmp_path: Path) -> tuple[Path, str]:
    """The infer stage on a model folder whose ``model.json`` is ``model_json`` (and the
    CrowdPose sample as val split): (model folder, the last line of stderr); the stage must
    fail with one line and write nothing."""
    from hintpose.data.coco import write_manifest

    crowdpose = ROOT / "tests/data/realdata/mmpose_crowdpose/test_crowdpose.json"
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    write_manifest(dataset, {"train": (str(crowdpose), str(tmp_path)),
                             "val": (str(crowdpose), str(tmp_path))}, "coco")
    model = tmp_path / "models" / "coco17"
    model.mkdir(parents=True)
    (model / "model.json").write_text(json.dumps(model_json))
    (tmp_path / "det.json").write_text("[]")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "stages/infer.py"), "--params",
         str(ROOT / "params.smoke.yaml"), "--model-dir", str(model), "--dataset", str(dataset),
         "--detections", str(tmp_path / "det.json"), "--out", str(tmp_path / "infer"),
         "--details", str(tmp_path / "details.json")], capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "infer").exists() and not (tmp_path / "details.json").exists()
    return model, proc.stderr.strip().splitlines()[-1]


def coco_model_json() -> dict:
    from hintpose.config import ModelParams, PoseParams
    from hintpose.topdown.spec import ModelSpec

    return ModelSpec.from_params(PoseParams(), ModelParams(),
                                 person_category()["keypoints"]).to_json()


def test_infer_refuses_a_model_of_other_joints(tmp_path: Path) -> None:
    """A 17-joint model on CrowdPose's 14 joints: one message naming both, before any work."""
    model, line = run_infer_on(coco_model_json(), tmp_path)
    assert line.startswith(f"error: {model}: the model predicts 17 joints (nose, ") and (
        "test_crowdpose.json has 14 (left_shoulder" in line), line


MODEL_JSON_CASES = {
    # name: (change to a valid model.json (None: remove the key), the error after the file)
    "no keypoint_names": ({"keypoint_names": None},
                          "not a pose model description (missing keypoint_names; retrain the "
                          "model)"),
    "empty keypoint_names": ({"keypoint_names": []},
                             "keypoint_names must be a non-empty list of joint names, got '[]'"),
    "width 100000": ({"width": 100000}, "width must be an integer in [1, 256], got '100000'"),
}


@pytest.mark.parametrize("case", sorted(MODEL_JSON_CASES))
def test_infer_refuses_a_bad_model_json_before_building_a_network(case: str,
                                                                   tmp_path: Path) -> None:
    change, message = MODEL_JSON_CASES[case]
    record = coco_model_json()
    for key, value in change.items():
        if value is None:
            del record[key]
        else:
            record[key] = value
    model, line = run_infer_on(record, tmp_path)
    assert line == f"error: {model / 'model.json'}: {message}"


DEMO_CASES = {
    # name: (header size of the input PNG, --out, the error line: {tmp} is the test folder)
    "a 32000x32000 PNG": ((32000, 32000), "demo.png",
                          "error: {tmp}/in.png: image is 32000x32000 pixels, more than the limit "
                          "of 67,108,864 (8192x8192)"),
    "a header claiming 50000x50000": ((50000, 50000), "demo.png",
                                      "error: {tmp}/in.png: image is 50000x50000 pixels, more "
                                      "than the limit of 67,108,864 (8192x8192)"),
    "an --out OpenCV cannot write": ((64, 48), "demo.xyz",
                                     "error: {tmp}/demo.xyz: cannot write a .xyz picture (use "
                                     ".png or .jpg)"),
}


@pytest.mark.parametrize("case", sorted(DEMO_CASES))
def test_the_demo_refuses_bad_images_before_any_work(case: str, tmp_path: Path) -> None:
    size, out, message = DEMO_CASES[case]
    png_claiming(tmp_path / "in.png", *size)
    proc = subprocess.run([sys.executable, "-m", "hintpose.report.demo", str(tmp_path / "in.png"),
                           "--out", str(tmp_path / out), "--params", str(ROOT / "params.yaml")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == message.format(tmp=tmp_path)
    assert not (tmp_path / out).exists()


def test_the_demo_writes_png_when_out_has_no_suffix(tmp_path: Path) -> None:
    from hintpose.report.demo import picture_path

    assert picture_path(tmp_path / "demo") == tmp_path / "demo.png"
    assert picture_path(tmp_path / "demo.jpg") == tmp_path / "demo.jpg"
