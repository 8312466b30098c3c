"""Stage box_removal: AP of ``box_removal.models`` as detector boxes go missing.

Reads each model's infer@<model> output on detector boxes (heatmaps, instance index,
``infer.json``; models: ``box_removal.models``, empty: baseline and I.C.+R.R.), drops
``box_removal.fractions`` of the boxes (hintpose.topdown.box_removal) and scores what remains
under the report's protocol and, for cue models with ``eval.neighbour_decay`` < 1, cue-aware
scoring. Writes ``--out`` (JSON: the rows), ``--csv`` and the figure ``--plot``.
"""

import argparse
from pathlib import Path

from hintpose.cli import run
from hintpose.config import load_params
from hintpose.data.coco import load_split
from hintpose.errors import DataError
from hintpose.io import write_atomic, write_json, write_text_atomic
from hintpose.topdown.box_removal import box_removal_study, load_model_output, plot_box_removal
from hintpose.topdown.postprocess import PostSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    ap.add_argument("--infer", type=Path, default=Path("data/infer"),
                    help="parent folder of the infer@<model> outputs")
    ap.add_argument("--out", type=Path, required=True, help="JSON of the study's rows")
    ap.add_argument("--csv", type=Path, required=True)
    ap.add_argument("--plot", type=Path, required=True)
    args = ap.parse_args()
    params = load_params(args.params)
    coco = load_split(args.dataset, "val")
    ev = params.eval
    outputs = {name: load_model_output(name, args.infer / name, ev.decoder, ev.neighbour_decay)
               for name in params.box_removal_models()}
    try:
        frame = box_removal_study(coco, outputs, params.box_removal.fractions,
                                  params.box_removal.seed, PostSettings.of(ev, coco))
    except ValueError as exc:
        raise DataError(f"{args.infer}: {exc} (rerun their infer stages)") from None
    write_json(args.out, {"fractions": list(params.box_removal.fractions),
                          "seed": params.box_removal.seed, "rows": frame.to_dict("records")})
    write_text_atomic(args.csv, frame.to_csv(index=False))
    write_atomic(args.plot, lambda p: plot_box_removal(frame, p))
    print(frame.to_string(index=False))


if __name__ == "__main__":
    run(main)
