"""The pretrain stage: one plain HRNet every pose model starts from, and its cue branch.

With ``pose.pretrain.cue_epochs`` k > 0 the pretraining forks after ``epochs - k`` epochs: the
plain HRNet trains on alone, and a copy with the instance-cue input (a HintPose cue model)
trains the last k epochs at the lr those epochs have (:func:`cue_branch_schedule`), on the
crops ``pose.data`` describes (paired cues, as MIPNet trains). Cue models start from that
copy, every other model from the plain HRNet: each has had the same pretraining steps.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from hintpose.config import ModelParams, PoseParams, PosePretrainParams, PoseTrainParams
from hintpose.data.coco import CocoPersons
from hintpose.engine import TrainResult
from hintpose.errors import DataError
from hintpose.models.hintpose import HintPose
from hintpose.runtime import SINGLE_PROCESS, DistInfo, Runtime
from hintpose.topdown.training import model_config, train_pose_model
from hintpose.topdown.weights import load_pretrained_backbone


def cue_branch_schedule(pre: PosePretrainParams) -> PoseTrainParams:
    """The cue branch's schedule: the pretraining's last ``cue_epochs`` epochs (the lr they
    run at, the lr steps that fall inside them), with ``added_lr_mult`` for the cue block."""
    fork = pre.epochs - pre.cue_epochs
    passed = sum(1 for f in pre.lr_steps if f * pre.epochs <= fork)
    inside = tuple((f * pre.epochs - fork) / pre.cue_epochs for f in pre.lr_steps
                   if fork < f * pre.epochs < pre.epochs)
    return PoseTrainParams(
        epochs=pre.cue_epochs, batch_size=pre.batch_size, lr=pre.lr * pre.lr_factor ** passed,
        lr_steps=inside, lr_factor=pre.lr_factor, added_lr_mult=pre.added_lr_mult,
        max_samples=pre.max_samples, val_samples=pre.val_samples, val_images=pre.val_images,
        probe_pairs=pre.probe_pairs, workers=pre.workers)


def pretrain_backbone(train_coco: CocoPersons, val_coco: CocoPersons | None, pose: PoseParams,
                      rt: Runtime, checkpoint: Path | None = None, *,
                      info: DistInfo = SINGLE_PROCESS,
                      progress: bool = True) -> tuple[TrainResult, TrainResult | None]:
    """The shared starting point of every pose model: a plain HRNet (``pose.width``) from
    ``pose.pretrained`` (if set) trained with the ``pose.pretrain`` schedule and seed. With
    ``pose.pretrain.epochs`` 0 it is that checkpoint, or a random init, untrained.

    With ``pose.pretrain.cue_epochs`` > 0 the second result is the cue branch (see
    PosePretrainParams): a cue model (seed ``pose.pretrain.seed``) trained from the plain
    HRNet of epoch ``epochs - cue_epochs`` (kept next to ``checkpoint``) with
    :func:`cue_branch_schedule`; else None."""
    pre = pose.pretrain
    plain = ModelParams(instance_cue=False, recurrent=False, seed=pre.seed)
    if pre.epochs == 0:
        config = model_config(pose, plain, train_coco)
        torch.manual_seed(pre.seed)
        net = HintPose.from_config(config)
        if pose.pretrained:
            load_pretrained_backbone(net, pose.pretrained)
        return TrainResult(net.eval(), config, [], 0), None
    work = (checkpoint.parent if checkpoint is not None else
            Path(tempfile.mkdtemp(prefix="hintpose-pretrain-")))
    fork_path = work / "fork.pt"
    fork = (pre.epochs - pre.cue_epochs, fork_path) if pre.cue_epochs else None
    result = train_pose_model(train_coco, val_coco, pose, plain, rt, checkpoint, schedule=pre,
                              info=info, progress=progress, fork=fork)
    if not pre.cue_epochs:
        return result, None
    if info.distributed:
        torch.distributed.barrier()  # rank 0 has written the fork
    if not fork_path.is_file():
        raise DataError(f"{fork_path}: the pretraining's fork for the cue branch is missing; "
                        f"delete {work} and run the stage again")
    cue_model = ModelParams(instance_cue=True, recurrent=False, seed=pre.seed)
    branch = train_pose_model(
        train_coco, val_coco, pose, cue_model, rt,
        work / "cue_last.pt" if checkpoint is not None else None,
        schedule=cue_branch_schedule(pre), info=info, progress=progress, init=fork_path,
        init_key="the pretraining's fork")
    return result, branch
