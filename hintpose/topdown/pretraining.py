"""The pretrain stage: one plain HRNet every pose model starts from, and its branches.

With ``pose.pretrain.cue_epochs`` k > 0 the pretrained HRNet continues in branches of k epochs
each, on one schedule (:func:`branch_schedule`: a short second cycle of the pretraining's lr,
on the pretraining's crops): the plain HRNet alone, and a copy per entry of
``pose.pretrain.branches``: with the instance-cue input (``cue``: paired cues, as MIPNet
trains, with ``pose.pretrain.paired_cues``), with recurrent refinement (``recurrent``: its
feedback blocks learn in the branch, fed as ``pose.data`` says) or with both
(``cue_recurrent``). Each model starts from the branch of its kind
(hintpose.topdown.params.branch_for), the others from the plain one: each has had the same
number of pretraining steps, from the same start.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from hintpose.config import ModelParams, PoseParams, PosePretrainParams, PoseTrainParams
from hintpose.engine import CHECKPOINT, TrainResult
from hintpose.io import output_dir, save_torch, write_json
from hintpose.models.folder import MODEL_CONFIG, plain_state
from hintpose.runtime import SINGLE_PROCESS, DistInfo, Runtime
from hintpose.topdown.params import BRANCH_WEIGHTS, BRANCHES
from hintpose.topdown.spec import ModelSpec
from hintpose.topdown.training import PoseData, start_model, train_pose_model
from hintpose.topdown.weights import BACKBONE_WEIGHTS, save_backbone
from hintpose.trainlog import write_log

#: The pretrained HRNet the branches start from, kept beside the resume checkpoint.
BRANCH_START = "pretrained.pt"
#: The branches' resume checkpoints (beside the pretraining's own ``last.pt``).
BRANCH_CHECKPOINTS = {"plain": "plain_last.pt", **{name: f"{name}_last.pt" for name in BRANCHES}}


def branch_schedule(pre: PosePretrainParams) -> PoseTrainParams:
    """The branches' schedule: ``cue_epochs`` epochs at the pretraining's lr, times its
    ``lr_factor`` for the second half; the cue block's lr x ``added_lr_mult``; the
    pretraining's crops and cue pairs (``center_jitter``, ``paired_cues``)."""
    return PoseTrainParams(
        epochs=pre.cue_epochs, batch_size=pre.batch_size, lr=pre.lr, lr_steps=(0.5,),
        lr_factor=pre.lr_factor, added_lr_mult=pre.added_lr_mult, max_samples=pre.max_samples,
        val_samples=pre.val_samples, val_images=pre.val_images, probe_pairs=pre.probe_pairs,
        workers=pre.workers, center_jitter=pre.center_jitter, paired_cues=pre.paired_cues)


def pretrain_backbone(data: PoseData, pose: PoseParams, rt: Runtime,
                      checkpoint: Path | None = None, *, info: DistInfo = SINGLE_PROCESS,
                      progress: bool = True) -> tuple[TrainResult, dict[str, TrainResult]]:
    """The shared starting point of every pose model: a plain HRNet (``pose.width``) from
    ``pose.pretrained`` (if set) trained with the ``pose.pretrain`` schedule and seed. With
    ``pose.pretrain.epochs`` 0 it is that checkpoint, or a random init, untrained.

    With ``pose.pretrain.cue_epochs`` > 0 (and ``epochs`` > 0) that HRNet (kept next to
    ``checkpoint``) continues in the branches of the module docstring: the first result is
    the plain branch (its log continues the pretraining's), the second maps each name of
    ``pose.pretrain.branches`` to its branch (seed ``pose.pretrain.seed``); else it is empty."""
    pre = pose.pretrain
    pretrained = Path(pose.pretrained) if pose.pretrained else None

    def spec(cue: str, recurrent: bool = False) -> ModelSpec:
        return ModelSpec.from_params(pose, ModelParams(cue=cue, recurrent=recurrent,
                                                       seed=pre.seed),
                                     data.train.category["keypoints"])

    start = start_model(spec("none"), pretrained)
    if pre.epochs == 0:
        return TrainResult(start.net.eval(), start.spec.to_json(), [], 0), {}
    result = train_pose_model(start, data, pre, rt, checkpoint, info=info, progress=progress)
    if not pre.cue_epochs:
        return result, {}
    work = (checkpoint.parent if checkpoint is not None else
            Path(tempfile.mkdtemp(prefix="hintpose-pretrain-")))
    begin = work / BRANCH_START
    if info.is_main:
        save_backbone(begin, result.model)
    if info.distributed:
        torch.distributed.barrier()  # rank 0 has written the branches' start
    schedule = branch_schedule(pre)

    def branch(name: str, cue: str, recurrent: bool) -> TrainResult:
        return train_pose_model(
            start_model(spec(cue, recurrent), begin), data, schedule, rt,
            work / BRANCH_CHECKPOINTS[name] if checkpoint is not None else None,
            info=info, progress=progress)

    plain_branch = branch("plain", "none", False)
    branches = {name: branch(name, *BRANCHES[name]) for name in pre.branches}
    done = len(result.log)
    log = [*result.log, *({**row, "epoch": done + row["epoch"]} for row in plain_branch.log)]
    return TrainResult(plain_branch.model, plain_branch.config, log,
                       result.resumed_epochs), branches


def write_pretrained(out: Path, checkpoints: Path, result: TrainResult,
                     branches: dict[str, TrainResult], log_dir: Path,
                     branch_logs: dict[str, Path]) -> None:
    """The pretrain stage's outputs: ``<out>/hrnet.pt`` (official HRNet names) and
    ``model.json``, with each branch's weights (``<out>/cue.pt``, ...); the dvclive logs of
    all (``branch_logs``: a folder per branch name, written empty for a branch not trained,
    so that the stage's declared outputs exist); then the resume checkpoints in
    ``checkpoints`` are removed."""
    with output_dir(out) as tmp:
        save_backbone(tmp / BACKBONE_WEIGHTS, result.model)
        write_json(tmp / MODEL_CONFIG, result.config)
        write_log(log_dir, result.log)
        for name, folder in branch_logs.items():
            write_log(folder, branches[name].log if name in branches else [])
        for name, branch in branches.items():
            save_torch(plain_state(branch.model), tmp / BRANCH_WEIGHTS[name])
    for name in (CHECKPOINT, BRANCH_START, *BRANCH_CHECKPOINTS.values()):
        (checkpoints / name).unlink(missing_ok=True)
