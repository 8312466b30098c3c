"""Run the trained pipeline on any image and draw the skeletons.

    python -m hintpose.report.demo IMAGE --out OUT.png [--model data/models/icrr_a]

The detector (``data/detector``) finds the persons, the MultiPoseNet (``data/multiposenet``)
gives each box its instance cues, and the chosen pose model runs once per (box, cue) with the
params' ``eval`` post-processing (decode, rescore, OKS-NMS); poses scoring at least
``--min-score`` are drawn with their boxes, on ``runtime.device`` in fp32. The image is
decoded once (every reader gets a copy), after its header passed the pixel limit of
hintpose.data.images; an ``--out`` without a suffix gets ``.png``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hintpose.cli import run
from hintpose.config import load_params
from hintpose.data.coco import load_coco, preloaded_image, read_image
from hintpose.data.keypoints import person_category
from hintpose.errors import DataError
from hintpose.io import write_atomic
from hintpose.report.visualize import PALETTE, draw_person
from hintpose.topdown.boxes import with_cues
from hintpose.topdown.inference import run_inference


def picture_path(out: Path) -> Path:
    """``out`` (``.png`` added when it has no suffix), checked to be a format OpenCV writes."""
    if not out.suffix:
        out = out.with_name(out.name + ".png")
    if not cv2.haveImageWriter(str(out)):
        raise DataError(f"{out}: cannot write a {out.suffix} picture (use .png or .jpg)")
    return out


def one_image_split(image: Path, folder: Path, keypoint_names: list[str],
                    pixels: np.ndarray) -> Any:
    """A one-image COCO split (no annotations) for ``image`` (decoded: ``pixels``) with the
    pose model's keypoints, so that the pipeline's loaders take it like any val image."""
    height, width = pixels.shape[:2]
    category = {**person_category(len(keypoint_names)), "keypoints": list(keypoint_names),
                "skeleton": []}  # drawn from the names (hintpose.data.keypoints.skeleton_of)
    data = {"images": [{"id": 1, "file_name": image.name, "width": width, "height": height}],
            "annotations": [], "categories": [category]}
    path = folder / "demo.json"
    path.write_text(json.dumps(data))
    return load_coco(path, image.parent, check_images="none")  # decoded already


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--detector", type=Path, default=Path("data/detector"))
    ap.add_argument("--cue-net", type=Path, default=Path("data/multiposenet"))
    ap.add_argument("--model", type=Path, default=Path("data/models/icrr_a"),
                    help="a trained pose model folder (data/models/<name>)")
    ap.add_argument("--min-score", type=float, default=0.0,
                    help="draw poses scoring at least this (after rescoring and OKS-NMS)")
    args = ap.parse_args()
    # the heavy imports only once the arguments are known (--help stays instant)
    from hintpose.bottomup.cues import load_model as load_cue_net
    from hintpose.bottomup.cues import multiposenet_cues
    from hintpose.detection.config import load_detector
    from hintpose.detection.detect import detect_images
    from hintpose.runtime import Runtime, resolve_device
    from hintpose.topdown.inference import PredictSettings, load_pose_model
    from hintpose.topdown.postprocess import PostSettings

    if not args.image.is_file():
        raise DataError(f"{args.image}: image not found")
    args.out = picture_path(args.out)
    pixels = read_image(args.image)  # the one decode; the pixel limit checked first
    params = load_params(args.params)
    rt = Runtime(resolve_device(params.runtime.device))
    with tempfile.TemporaryDirectory() as tmp, preloaded_image(args.image, pixels):
        net, spec = load_pose_model(args.model, rt.device)
        coco = one_image_split(args.image.resolve(), Path(tmp), list(spec.keypoint_names),
                               pixels)
        detector, label = load_detector(args.detector, rt.device)
        boxes = detect_images(detector, [(1, args.image)], label, 1,
                              params.detector.score_thr, params.detector.min_box_size)
        if boxes and spec.conditioning.takes_input:
            cue_net, cue_config = load_cue_net(args.cue_net, rt.device)
            cues = multiposenet_cues(cue_net, cue_config, coco, boxes, params.cues, rt,
                                     progress=False)
            boxes = with_cues(boxes, cues)
        results = []
        if boxes:
            results = run_inference(net, spec, coco, boxes, str(args.image),
                                    Path(tmp) / "heatmaps.npy", rt,
                                    PredictSettings.of(params.eval),
                                    PostSettings.of(params.eval, coco)).results
    canvas = pixels  # every reader above had a copy
    skeleton = coco.skeleton
    shown = [r for r in results if r["score"] >= args.min_score]
    for i, r in enumerate(sorted(shown, key=lambda r: -r["score"])):
        kpts = np.asarray(r["keypoints"], dtype=np.float64).reshape(-1, 3)
        draw_person(canvas, kpts, skeleton, PALETTE[i % len(PALETTE)], min_visibility=0.0)
    for box in boxes:
        x, y, w, h = (round(v) for v in box["bbox"])
        cv2.rectangle(canvas, (x, y), (x + w, y + h), (200, 200, 200), 1)
        for cx, cy, _ in box.get("cues", []):
            cv2.drawMarker(canvas, (round(cx), round(cy)), (0, 0, 255), cv2.MARKER_CROSS, 8, 2)
    ok, encoded = cv2.imencode(args.out.suffix, canvas)
    if not ok:
        raise DataError(f"{args.out}: the picture does not encode as {args.out.suffix}")
    write_atomic(args.out, lambda p: p.write_bytes(encoded.tobytes()))
    print(f"{args.image}: {len(boxes)} persons detected, {len(shown)} poses drawn "
          f"(score >= {args.min_score}) -> {args.out}")


if __name__ == "__main__":
    run(main)
