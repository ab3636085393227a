# The Mask R-CNN RepViT-M1.1 recipe of ../maskrcnn_repvit_m1_1_coco.py, scaled to the built-in
# demo data (4 shape classes) so it trains from scratch on a laptop CPU:
# smaller images, fewer proposals and RoIs, an iteration schedule, and no ImageNet weights
# (so BatchNorm is trained, not frozen), and FPN/RoI heads at half width (128 channels, 256-wide
# box FCs): at stock widths the heads take ~60% of a CPU step. (Narrower, 64-channel mask convs
# saved 10% of the time but cost 13 points of bbox AP50: the mask loss teaches the backbone.)
# From scratch, the FPN neck and the mask head learn faster with BatchNorm after their convs
# (as in mmdet's from-scratch recipes, which normalise heads and neck): +6 bbox AP50 at 75% of
# the schedule, same step time; `--fuse` folds them into their convs like the Semantic FPN's.
# Make the data with `python tools/make_demo_data.py`.
_base_ = '../repvit/maskrcnn_repvit_m1_1_coco.py'

data_root = 'data/demo/coco/'
classes = ('circle', 'triangle', 'square', 'star')
metainfo = dict(classes=classes, palette=[(220, 20, 60), (0, 128, 255), (255, 200, 0),
                                          (60, 180, 75)])
image_size = (128, 128)  # the 160-pixel scenes, shrunk: cheaper steps
max_iters = 1150
width = 128

model = dict(
    backbone=dict(init_cfg=None, norm_eval=False),
    neck=dict(out_channels=width, norm_cfg=dict(type='BN')),
    rpn_head=dict(in_channels=width, feat_channels=width,
                  anchor_generator=dict(scales=[4], strides=[4, 8, 16, 32, 64])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, fc_out_channels=256, num_classes=len(classes)),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(in_channels=width, conv_out_channels=width,
                       num_classes=len(classes), norm_cfg=dict(type='BN'))),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100), rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.75, 1.25), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=2, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train2017.json',
                 data_prefix=dict(img='train2017/'), filter_cfg=dict(min_size=4),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=2,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val2017.json',
                 data_prefix=dict(img='val2017/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# same optimiser as the recipe, at a from-scratch learning rate for batch 4; torch's fused
# AdamW kernel (torch >= 2.4 on CPU; the same update in one pass: a 1.03x faster step, measured)
optim_wrapper = dict(optimizer=dict(lr=1e-3, fused=True), clip_grad=dict(max_norm=10.0))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 0.75), int(max_iters * 0.92)], gamma=0.1),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters // 4,
                    max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=4)
# the same computation, faster on CPU: RoIAlign as two matmuls per RoI (mmcv's CPU kernel is
# single-threaded) and channels-last convolutions
custom_hooks = [dict(type='mmrepvit.NaNGuardHook'),
                dict(type='mmrepvit.CPUSpeedHook', channels_last=True)]
randomness = dict(seed=0)  # the same numbers on every run of the demo
