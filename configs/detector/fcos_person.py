# The person detector of the embedded default, trained from scratch on the CPU by the
# `train_detector` stage: MMDetection's FCOS with a narrow ResNet-18 (16 base channels), an FPN
# and a two-conv GN head, for one class, at half the synthetic images' size (160x128).
#
# Why this one (measured on this 2-core machine, see docs/sizing.md "The detector"): from scratch,
# RTMDet-tiny reached box AP 0.04 after 12 minutes and a 0.25-wide RTMDet at 160x128 0.07 after
# 18; even 600 iterations on 16 images took RTMDet to only 0.33 AP on those same images, FCOS
# to 0.61. Nothing here is initialised from downloaded weights.
#
# Data paths, epochs, batch size, learning rate and seed come from params.yaml
# (`detector.train`, filled in by hintpose.detection.config.training_config); the model and its
# data pipeline live here. Any MMDetection 3.x config (e.g. mmdet's HTC) can take this file's place
# through `detector.config` + `detector.checkpoint`.
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'

input_size = (160, 128)  # (width, height)
mean, std = [103.53, 116.28, 123.675], [57.375, 57.12, 58.395]  # BGR

model = dict(
    data_preprocessor=dict(mean=mean, std=std, bgr_to_rgb=False, pad_size_divisor=32),
    backbone=dict(depth=18, base_channels=16, frozen_stages=-1, style='pytorch',
                  norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=64),
    bbox_head=dict(num_classes=1, in_channels=64, feat_channels=64, stacked_convs=2,
                   norm_cfg=dict(type='GN', num_groups=16, requires_grad=True),
                   centerness_on_reg=True, norm_on_bbox=True, center_sampling=True,
                   conv_bias=True, dcn_on_last_conv=False,
                   loss_bbox=dict(type='GIoULoss', loss_weight=1.0)),
    test_cfg=dict(nms_pre=1000, score_thr=0.001, nms=dict(type='nms', iou_threshold=0.6),
                  max_per_img=100))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=input_size, ratio_range=(0.75, 1.4), keep_ratio=True),
    dict(type='RandomCrop', crop_size=input_size, allow_negative_crop=True),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=input_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=input_size, keep_ratio=True),
    dict(type='Pad', size=input_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

metainfo = dict(classes=('person',), palette=[(220, 20, 60)])
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False, pin_memory=False,
    dataset=dict(metainfo=metainfo, pipeline=train_pipeline,
                 filter_cfg=dict(filter_empty_gt=False, min_size=0)))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False, pin_memory=False,
    dataset=dict(metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader

# AdamW (weight decay off for norms and biases), a short linear warm-up, then cosine decay over
# the whole short schedule.
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.004, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0, bias_decay_mult=0, bypass_duplicate=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', eta_min=2e-5, by_epoch=True, begin=0, end=7, T_max=7,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=7, val_interval=1)
default_hooks = dict(checkpoint=None, logger=dict(type='LoggerHook', interval=50))
