"""Stage refine: PoseFix applied to COCO keypoint results (by default the ensemble's).

For each ``--input NAME:RESULTS=OUT`` (the ensemble's results with detector boxes and with GT
boxes), every pose scoring at least ``posefix.min_score`` is refined; instance and joint scores
are kept and OKS-NMS runs again per image. Image ids are checked against the val split.
``--details`` gets, per input, the fraction of labeled GT joints whose error PoseFix reduced or
increased and their keypoint similarity before and after (overall, by the input joint's error
type, by crowd level); ``--plot`` draws the error types' figures. Files are written only
when every input has been refined, each atomically.
"""

import argparse
from pathlib import Path

from hintpose.cli import run
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.errors import ConfigError
from hintpose.io import write_atomic, write_json
from hintpose.posefix.analysis import plot_refinement, refinement_analysis
from hintpose.posefix.refine import load_model, read_pose_results, refine_results
from hintpose.runtime import from_params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--model", type=Path, default=Path("data/posefix"))
    ap.add_argument("--input", action="append", required=True, metavar="NAME:RESULTS=OUT",
                    help="a label, a COCO keypoint results file and where its refinement "
                         "goes, e.g. det:data/ensemble/results_det.json="
                         "data/results/ensemble_posefix.json")
    ap.add_argument("--details", type=Path, default=Path("metrics/details/posefix.json"))
    ap.add_argument("--plot", type=Path, default=None,
                    help="PNG of the per-error-type figures, one panel per input")
    args = ap.parse_args()
    params = load_params(args.params)
    jobs = []
    for spec in args.input:
        label, _, rest = spec.partition(":")
        source, sep, out = rest.partition("=")
        if not (label and source and sep and out):
            raise ConfigError(f"--input {spec!r}: expected NAME:RESULTS=OUT")
        jobs.append((label, Path(source), Path(out)))
    coco = load_split(args.dataset, "val")
    inputs = {label: read_pose_results(src, coco) for label, src, _ in jobs}
    rp = params.runtime
    rt = from_params(rp)
    net, config = load_model(args.model, rt.device)
    net.to(memory_format=rt.memory_format)
    outputs, metrics = {}, {}
    for label, _, out in jobs:
        r = refine_results(net, config, coco, inputs[label], params.posefix, rt,
                           params.eval.nms_thr, params.eval.soft_nms, params.eval.decoder)
        outputs[out] = r.results
        stats = {k: v for k, v in r.stats.items() if k != "flip_test"}
        metrics[label] = {**stats, **refinement_analysis(coco, inputs[label], r.refined)}
        joints = metrics[label]["overall"]
        print(f"refine {label}: {r.stats['refined']} of {r.stats['inputs']} poses refined, "
              f"{r.stats['results']} after OKS-NMS, {r.stats['seconds']} s; of "
              f"{joints.get('joints', 0)} matched GT joints {joints.get('reduced', 0):.1%} "
              f"closer, {joints.get('increased', 0):.1%} farther")
    for out, results in outputs.items():
        write_json(out, results, indent=None)
    write_json(args.details, metrics)
    if args.plot is not None:
        write_atomic(args.plot, lambda p: plot_refinement(metrics, p))


if __name__ == "__main__":
    run(main)
