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
from hintpose.data.coco import CocoPersons
from hintpose.engine import TrainResult
from hintpose.models.hintpose import HintPose
from hintpose.runtime import SINGLE_PROCESS, DistInfo, Runtime
from hintpose.topdown.training import model_config, train_pose_model
from hintpose.topdown.weights import load_pretrained_backbone, save_backbone


def branch_schedule(pre: PosePretrainParams) -> PoseTrainParams:
    """The branches' schedule: ``cue_epochs`` epochs at the pretraining's lr, times its
    ``lr_factor`` for the second half; the cue block's lr x ``added_lr_mult``."""
    return PoseTrainParams(
        epochs=pre.cue_epochs, batch_size=pre.batch_size, lr=pre.lr, lr_steps=(0.5,),
        lr_factor=pre.lr_factor, added_lr_mult=pre.added_lr_mult, max_samples=pre.max_samples,
        val_samples=pre.val_samples, val_images=pre.val_images, probe_pairs=pre.probe_pairs,
        workers=pre.workers)


def pretrain_backbone(train_coco: CocoPersons, val_coco: CocoPersons | None, pose: PoseParams,
                      rt: Runtime, checkpoint: Path | None = None, *,
                      info: DistInfo = SINGLE_PROCESS,
                      progress: bool = True) -> tuple[TrainResult, TrainResult | None]:
    """The shared starting point of every pose model: a plain HRNet (``pose.width``) from
    ``pose.pretrained`` (if set) trained with the ``pose.pretrain`` schedule and seed. With
    ``pose.pretrain.epochs`` 0 it is that checkpoint, or a random init, untrained.

    With ``pose.pretrain.cue_epochs`` > 0 (and ``epochs`` > 0) that HRNet (kept next to
    ``checkpoint``) continues in the two branches of the module docstring: the first result
    is the plain branch (its log continues the pretraining's), the second the cue branch
    (seed ``pose.pretrain.seed``); else the second is None."""
    pre = pose.pretrain
    plain = ModelParams(instance_cue=False, recurrent=False, seed=pre.seed)
    if pre.epochs == 0:
        config = model_config(pose, plain, train_coco)
        torch.manual_seed(pre.seed)
        net = HintPose.from_config(config)
        if pose.pretrained:
            load_pretrained_backbone(net, pose.pretrained)
        return TrainResult(net.eval(), config, [], 0), None
    result = train_pose_model(train_coco, val_coco, pose, plain, rt, checkpoint, schedule=pre,
                              info=info, progress=progress)
    if not pre.cue_epochs:
        return result, None
    work = (checkpoint.parent if checkpoint is not None else
            Path(tempfile.mkdtemp(prefix="hintpose-pretrain-")))
    start = work / "pretrained.pt"
    if info.is_main:
        save_backbone(start, result.model)
    if info.distributed:
        torch.distributed.barrier()  # rank 0 has written the branches' start
    schedule = branch_schedule(pre)

    def branch(model: ModelParams, name: str) -> TrainResult:
        return train_pose_model(
            train_coco, val_coco, pose, model, rt,
            work / f"{name}_last.pt" if checkpoint is not None else None, schedule=schedule,
            info=info, progress=progress, init=start, init_key="the pretrained HRNet")

    plain_branch = branch(plain, "plain")
    cue_branch = branch(ModelParams(instance_cue=True, recurrent=False, seed=pre.seed), "cue")
    done = len(result.log)
    log = [*result.log, *({**row, "epoch": done + row["epoch"]} for row in plain_branch.log)]
    return TrainResult(plain_branch.model, plain_branch.config, log,
                       result.resumed_epochs), cue_branch
