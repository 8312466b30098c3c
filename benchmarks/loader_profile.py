"""Where a pose-training sample's time goes: the parts of TopDownDataset.__getitem__ on the
prepared dataset with the params file's pose.data, against a whole training step.

    PYTHONPATH=. python benchmarks/loader_profile.py [--params params.yaml] [--samples 400]

Prints JSON: microseconds per sample for JPEG decoding (cv2.imread), the crop (warpAffine), the
heatmap targets, the cue map and the tensor conversion; the whole item; and, for scale, the
images per second of the default network's training step (bf16/channels_last as the runtime
section says) with the CPU capability. A sample costs less than a step's share when the loader
keeps up; decoding is what an in-memory image cache would save.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from hintpose.config import load_params
from hintpose.data.coco import load_split, read_image
from hintpose.data.transforms import affine_matrix, box_to_center_size, image_tensor
from hintpose.runtime import Runtime, bf16_supported
from hintpose.topdown.codec import HeatmapCodec
from hintpose.topdown.conditioning import PointCue
from hintpose.topdown.samples import TopDownDataset, training_instances


def per_sample_us(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return round((time.perf_counter() - start) / len(items) * 1e6, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--samples", type=int, default=400)
    args = ap.parse_args()
    params = load_params(args.params)
    data = params.pose.data
    coco = load_split(args.dataset, "train")
    instances = training_instances(coco)[: args.samples]
    size = (data.input_width, data.input_height)
    aspect = data.input_width / data.input_height
    codec = HeatmapCodec.for_input(data.input_width, data.input_height, data.sigma)
    paths = [coco.image_path(inst.image_id) for inst in instances]
    images = [read_image(p) for p in paths]
    frames = [box_to_center_size(inst.bbox, aspect, data.box_padding) for inst in instances]
    mats = [affine_matrix(c, s, 0.0, size) for c, s in frames]
    crops = [cv2.warpAffine(img, m, size, flags=cv2.INTER_LINEAR)
             for img, m in zip(images, mats, strict=True)]
    joints = [inst.keypoints for inst in instances]
    figures = {
        "decode_us": per_sample_us(lambda p: cv2.imread(str(p), cv2.IMREAD_COLOR), paths),
        "crop_us": per_sample_us(
            lambda i: cv2.warpAffine(images[i], mats[i], size, flags=cv2.INTER_LINEAR),
            range(len(instances))),
        "targets_us": per_sample_us(lambda k: codec.encode(k[:, :2], k[:, 2] > 0), joints),
        "cue_map_us": per_sample_us(
            lambda _: PointCue().render(np.array(size, float) / 2, size, data.cue_sigma),
            instances),
        "tensor_us": per_sample_us(image_tensor, crops),
    }
    dataset = TopDownDataset(coco, instances, data, train=True, seed=0)
    figures["item_us"] = per_sample_us(dataset.__getitem__, range(len(instances)))

    # a training step of the default network, for scale
    from hintpose.models.hintpose import HintPose
    from hintpose.topdown.samples import collate
    from hintpose.topdown.training import forward_losses

    cpu = torch.device("cpu")
    rt = Runtime(cpu, params.runtime.bf16 and bf16_supported(cpu), params.runtime.channels_last)
    torch.manual_seed(0)
    net = HintPose(params.pose.width, "none", False, hops=1, modules=params.pose.modules,
                   blocks=params.pose.blocks).to(memory_format=rt.memory_format).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    batch = collate([dataset[i] for i in range(16)])
    times = []
    for step in range(8):
        t0 = time.perf_counter()
        loss = torch.stack(forward_losses(net, batch, rt)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= 3:
            times.append(time.perf_counter() - t0)
    step_img_s = 16 / float(np.median(times))
    figures.update({"step_img_s": round(step_img_s, 1),
                    "step_us_per_image": round(1e6 / step_img_s, 1),
                    "threads": torch.get_num_threads(), "bf16": rt.bf16,
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "samples": len(instances)})
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
