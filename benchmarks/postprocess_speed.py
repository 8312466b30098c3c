"""Decode + rescoring + per-image OKS-NMS throughput for many top-down instances.

100,000 instances of 17 x 64 x 48 heatmaps (float32) do not fit in memory at once (21 GB), so
the heatmaps are processed in chunks, as the inference and ensemble stages do. Every chunk holds
Gaussian peaks at random places plus noise; the timing covers decode, rescoring and OKS-NMS
(grouped into images of 20 instances), not the making of the heatmaps.
Last line: a JSON object with `instances` and `seconds`.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from hintpose.topdown.codec import HeatmapCodec, decode
from hintpose.topdown.postprocess import oks_nms, rescore


def make_chunk(rng: np.random.Generator, n: int, codec: HeatmapCodec) -> np.ndarray:
    pts = rng.uniform([0, 0], codec.input_size, (n, 17, 2))
    maps = np.stack([codec.encode(p, np.ones(17, bool))[0] for p in pts[: min(n, 256)]])
    maps = np.resize(maps, (n, 17, *maps.shape[2:]))
    return maps + rng.uniform(0, 0.05, maps.shape).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--instances", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=4_000)
    ap.add_argument("--per-image", type=int, default=20)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    codec = HeatmapCodec.for_input(192, 256, 2.0)
    chunk = make_chunk(rng, args.chunk, codec)
    centers = rng.uniform(100, 500, (args.chunk, 2))
    sizes = rng.uniform(50, 300, (args.chunk, 1)) * np.array([0.75, 1.0])
    box_scores = rng.uniform(0.3, 1.0, args.chunk)
    done, seconds, kept = 0, 0.0, 0
    while done < args.instances:
        n = min(args.chunk, args.instances - done)
        t0 = time.perf_counter()
        coords, maxvals = decode(chunk[:n], centers[:n], sizes[:n])
        kpts = np.concatenate([coords, maxvals], axis=2)
        scores = rescore(kpts, box_scores[:n])
        areas = sizes[:n].prod(axis=1)
        for s in range(0, n, args.per_image):
            sl = slice(s, s + args.per_image)
            kept += len(oks_nms(kpts[sl], scores[sl], areas[sl], 0.9))
        seconds += time.perf_counter() - t0
        done += n
    print(f"{done} instances ({done // args.per_image} images), kept {kept} after OKS-NMS: "
          f"{seconds:.2f} s, {done / seconds:,.0f} instances/s")
    print(json.dumps({"instances": done, "seconds": round(seconds, 3)}))


if __name__ == "__main__":
    main()
