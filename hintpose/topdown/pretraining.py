"""The pretrain stage: one plain HRNet every pose model starts from, and its cue branch.

With ``pose.pretrain.cue_epochs`` k > 0 the pretrained HRNet continues in two branches of k
epochs each, on the same schedule (:func:`branch_schedule`: a short second cycle of the
pretraining's lr): the plain HRNet alone, and a copy with the instance-cue input (a HintPose
cue model) on the crops ``pose.data`` describes (paired cues, as MIPNet trains). Cue models
start from the cue branch, every other model from the plain one: each has had the same
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
from hintpose.topdown.spec import ModelSpec
from hintpose.topdown.training import PoseData, start_model, train_pose_model
from hintpose.topdown.weights import BACKBONE_WEIGHTS, CUE_WEIGHTS, save_backbone
from hintpose.trainlog import write_log

#: The pretrained HRNet the branches start from, kept beside the resume checkpoint.
BRANCH_START = "pretrained.pt"
#: The branches' resume checkpoints (beside the pretraining's own ``last.pt``).
BRANCH_CHECKPOINTS = {"plain": "plain_last.pt", "cue": "cue_last.pt"}


def branch_schedule(pre: PosePretrainParams) -> PoseTrainParams:
    """The branches' schedule: ``cue_epochs`` epochs at the pretraining's lr, times its
    ``lr_factor`` for the second half; the cue block's lr x ``added_lr_mult``."""
    return PoseTrainParams(
        epochs=pre.cue_epochs, batch_size=pre.batch_size, lr=pre.lr, lr_steps=(0.5,),
        lr_factor=pre.lr_factor, added_lr_mult=pre.added_lr_mult, max_samples=pre.max_samples,
        val_samples=pre.val_samples, val_images=pre.val_images, probe_pairs=pre.probe_pairs,
        workers=pre.workers)


def pretrain_backbone(data: PoseData, pose: PoseParams, rt: Runtime,
                      checkpoint: Path | None = None, *, info: DistInfo = SINGLE_PROCESS,
                      progress: bool = True) -> tuple[TrainResult, TrainResult | None]:
    """The shared starting point of every pose model: a plain HRNet (``pose.width``) from
    ``pose.pretrained`` (if set) trained with the ``pose.pretrain`` schedule and seed. With
    ``pose.pretrain.epochs`` 0 it is that checkpoint, or a random init, untrained.

    With ``pose.pretrain.cue_epochs`` > 0 (and ``epochs`` > 0) that HRNet (kept next to
    ``checkpoint``) continues in the two branches of the module docstring: the first result
    is the plain branch (its log continues the pretraining's), the second the cue branch
    (seed ``pose.pretrain.seed``, the report's ``point`` cue); else the second is None."""
    pre = pose.pretrain
    pretrained = Path(pose.pretrained) if pose.pretrained else None

    def spec(cue: str) -> ModelSpec:
        return ModelSpec.from_params(pose, ModelParams(cue=cue, seed=pre.seed),
                                     data.train.category["keypoints"])

    start = start_model(spec("none"), pretrained)
    if pre.epochs == 0:
        return TrainResult(start.net.eval(), start.spec.to_json(), [], 0), None
    result = train_pose_model(start, data, pre, rt, checkpoint, info=info, progress=progress)
    if not pre.cue_epochs:
        return result, None
    work = (checkpoint.parent if checkpoint is not None else
            Path(tempfile.mkdtemp(prefix="hintpose-pretrain-")))
    begin = work / BRANCH_START
    if info.is_main:
        save_backbone(begin, result.model)
    if info.distributed:
        torch.distributed.barrier()  # rank 0 has written the branches' start
    schedule = branch_schedule(pre)

    def branch(cue: str, name: str) -> TrainResult:
        return train_pose_model(
            start_model(spec(cue), begin), data, schedule, rt,
            work / BRANCH_CHECKPOINTS[name] if checkpoint is not None else None,
            info=info, progress=progress)

    plain_branch = branch("none", "plain")
    cue_branch = branch("point", "cue")
    done = len(result.log)
    log = [*result.log, *({**row, "epoch": done + row["epoch"]} for row in plain_branch.log)]
    return TrainResult(plain_branch.model, plain_branch.config, log,
                       result.resumed_epochs), cue_branch


def write_pretrained(out: Path, checkpoints: Path, result: TrainResult,
                     branch: TrainResult | None, log_dir: Path, cue_log_dir: Path) -> None:
    """The pretrain stage's outputs: ``<out>/hrnet.pt`` (official HRNet names) and
    ``model.json``, with the cue branch ``<out>/cue.pt``; the dvclive logs of both; then the
    resume checkpoints in ``checkpoints`` are removed."""
    with output_dir(out) as tmp:
        save_backbone(tmp / BACKBONE_WEIGHTS, result.model)
        write_json(tmp / MODEL_CONFIG, result.config)
        write_log(log_dir, result.log)
        if branch is not None:
            save_torch(plain_state(branch.model), tmp / CUE_WEIGHTS)
            write_log(cue_log_dir, branch.log)
    for name in (CHECKPOINT, BRANCH_START, *BRANCH_CHECKPOINTS.values()):
        (checkpoints / name).unlink(missing_ok=True)
