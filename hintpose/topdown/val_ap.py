"""A pose model's learning curve: keypoint AP with GT boxes on a fixed subset of val images,
measured after every training epoch (``pose.train.val_images`` / ``pose.pretrain.val_images``).

The subset is drawn once with a fixed seed, so every model and epoch is scored on the same
images: every labeled, non-crowd person of those images gets its GT box, and a cue model its
cue on one of the person's labeled joints (exact, drawn with the same seed), as the validation
loss does. Inference, decoding, rescoring and OKS-NMS are the infer stage's
(``hintpose.topdown.inference.run_inference``, no flip test), scored by pycocotools on those
images only. The figure is for comparing epochs and models, not a substitute for the val
split's scores: 50 images hold about 220 persons.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from hintpose.data.coco import CocoPersons
from hintpose.runtime import Runtime, current_dist
from hintpose.scoring.evaluation import coco_keypoint_eval
from hintpose.topdown.inference import PredictSettings, run_inference
from hintpose.topdown.outputs import InferenceRun
from hintpose.topdown.postprocess import PostSettings
from hintpose.topdown.spec import ModelSpec


class ValAP:
    """GT-box keypoint AP of ``images`` val images drawn with ``seed``."""

    def __init__(self, coco: CocoPersons, images: int, seed: int, decoder: str,
                 batch_size: int) -> None:
        self.coco = coco
        persons = coco.training_persons()
        ids = sorted({p["image_id"] for p in persons})
        rng = np.random.default_rng(seed)
        if 0 < images < len(ids):
            ids = sorted(int(i) for i in rng.choice(ids, images, replace=False))
        self.image_ids = ids if images > 0 else []
        wanted = set(self.image_ids)
        self.boxes: list[dict[str, Any]] = []
        for p in persons:
            if p["image_id"] not in wanted:
                continue
            kpts = np.asarray(p["keypoints"], dtype=np.float64).reshape(-1, 3)
            j = rng.choice(np.flatnonzero(kpts[:, 2] > 0))
            self.boxes.append({"image_id": p["image_id"], "bbox": list(p["clean_bbox"]),
                               "score": 1.0, "cues": [[kpts[j, 0], kpts[j, 1], 1.0]]})
        self.predict = PredictSettings(batch_size=batch_size, decoder=decoder)
        self.post = PostSettings(sigmas=coco.sigmas, category_id=coco.category["id"])

    def __call__(self, net: torch.nn.Module, spec: ModelSpec, rt: Runtime,
                 heatmap_file: Path) -> float:
        """AP (0-100) of ``net`` (every rank of a process group calls this; all get it)."""
        return self.per_hop(net, spec, rt, heatmap_file)[-1]

    def per_hop(self, net: torch.nn.Module, spec: ModelSpec, rt: Runtime,
                heatmap_file: Path) -> list[float]:
        """AP (0-100) of every hop of ``net`` (``spec.hops`` of them, the last last)."""
        hops = spec.hops
        if not self.boxes:
            return [float("nan")] * hops
        heatmap_file.parent.mkdir(parents=True, exist_ok=True)
        hop_files = earlier_hop_files(heatmap_file, hops)
        was_training = net.training
        net.eval()
        try:
            run = run_inference(net, spec, self.coco, self.boxes, "val AP boxes", heatmap_file,
                                rt, self.predict, self.post, hop_files)
        finally:
            net.train(was_training)
        aps = [float("nan")] * hops
        info = current_dist()
        if info.is_main:
            heatmap_file.unlink(missing_ok=True)
            aps = hop_aps(self.coco, run, hop_files, self.image_ids)
        if info.distributed:
            value = torch.tensor(aps, dtype=torch.float64)
            torch.distributed.broadcast(value, 0)
            aps = value.tolist()
        return aps


def earlier_hop_files(heatmap_file: Path, hops: int) -> list[Path]:
    """Where :func:`run_inference` writes the earlier hops' heatmaps of a ``hops``-hop model
    (hop 1 first), next to ``heatmap_file``."""
    return [heatmap_file.with_name(f"hop{h + 1}_{heatmap_file.name}") for h in range(hops - 1)]


def hop_aps(coco: CocoPersons, run: InferenceRun, hop_files: list[Path],
            image_ids: list[int] | None = None) -> list[float]:
    """AP (0-100) of every hop of ``run`` (the last is its ``results``) on ``image_ids`` (None:
    all), deleting the earlier hops' heatmap files."""
    for file in hop_files:
        file.unlink(missing_ok=True)
    return [100.0 * coco_keypoint_eval(coco.data, res, image_ids, coco.sigmas)["AP"]
            for res in [*run.hop_results, run.results]]
