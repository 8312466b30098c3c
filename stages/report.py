"""Stage report: the figures for `dvc plots` and the README.

- ``<out>/figure3_instance_cues.png``: the report's Figure 3 with ``--cue-model`` on the
  detection box (of ``--cues``) whose first two cues lie on two different persons of the most
  crowded image: for each cue, the crop, the heatmaps and the skeleton.
- ``<out>/training_curves.png``: training and validation losses of every trained network (the
  dvclive folders under ``--logs``: ``pretrain`` (and its branches ``pretrain_cue``, ...),
  ``train/<model>`` for each of ``models``,
  ``detector``, ``multiposenet``, ``posefix``; the pose networks share a panel).
- ``<out>/learning_curves.png``: each network's accuracy after every epoch (pose: GT-box AP of
  ``pose.*.val_images`` val images; detector: box AP; MultiPoseNet: multi-person cue recall;
  PoseFix: mean joint error of its refined val poses) against its training minutes, the pose
  models continuing from the pretrained HRNet's curve.
- ``<out>/crowded_persons.png``: for the ``--persons`` most overlapped val persons, the GT and
  the best-matching pose (highest OKS) of each ``--compare NAME=RESULTS`` (detector boxes).
AP by crowd level per result set is the score stage's ``metrics/plots/ap_by_crowd.png``.
"""

import argparse
from pathlib import Path

from hintpose.cli import run
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.errors import ConfigError
from hintpose.io import finish_dir, read_json, start_dir
from hintpose.report.figures import (
    most_crowded_persons,
    pick_crowded_box,
    plot_crowded_grid,
    plot_cue_figure,
    plot_learning_curves,
    plot_training_curves,
    read_logs,
)
from hintpose.topdown.inference import load_pose_model


def pairs(specs: list[str], flag: str) -> dict[str, Path]:
    out = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"{flag} {spec!r}: expected NAME=PATH")
        out[name] = Path(path)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--cues", type=Path, required=True, help="the cue stage's val.json")
    ap.add_argument("--cue-model", type=Path, required=True, help="a trained cue model folder")
    ap.add_argument("--logs", type=Path, default=Path("metrics/logs"),
                    help="parent folder of the training stages' dvclive logs")
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=RESULTS")
    ap.add_argument("--persons", type=int, default=6)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    params = load_params(args.params)
    coco = load_split(args.dataset, "val")
    pre = params.pose.pretrain
    branch = ({f"pose@pretrain_{name}": args.logs / f"pretrain_{name}" for name in pre.branches}
              if pre.epochs and pre.cue_epochs else {})
    logs = read_logs({"pose@pretrain": args.logs / "pretrain", **branch,
                      **{f"pose@{m}": args.logs / "train" / m for m in params.models},
                      **{net: args.logs / net for net in ("detector", "multiposenet", "posefix")}})
    compare = {name: read_json(path, "results file")
               for name, path in pairs(args.compare, "--compare").items()}
    net, spec = load_pose_model(args.cue_model, "cpu")
    coco.check_keypoints(list(spec.keypoint_names), args.cue_model)
    if not spec.conditioning.takes_input:
        raise ConfigError(f"--cue-model {args.cue_model}: this model takes no instance cue")
    pick = pick_crowded_box(coco, read_json(args.cues, "cues file"))

    tmp = start_dir(args.out)  # the figures replace the earlier ones only all together
    plot_cue_figure(net, spec, coco, pick, tmp / "figure3_instance_cues.png",
                    params.eval.decoder)
    plot_training_curves(logs, tmp / "training_curves.png")
    plot_learning_curves(logs, tmp / "learning_curves.png")
    persons = most_crowded_persons(coco, args.persons)
    plot_crowded_grid(coco, persons, compare, tmp / "crowded_persons.png")
    finish_dir(args.out)
    print(f"report: 3 figures in {args.out} (Figure 3 from image {pick.image_id})")


if __name__ == "__main__":
    run(main)
