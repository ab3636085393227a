# The Semantic FPN RepViT-M1.1 recipe of ../fpn_repvit_m1_1_ade20k.py, scaled to the built-in
# demo data (ADE20K layout, background + 4 shape classes): 128-pixel crops of images resized to
# a short side of 96-192 (the recipe's 512 crops of 256-1024), an iteration schedule, no ImageNet
# weights, and a half-width FPN neck (128 channels: 1.4x faster steps, measured interleaved)
# with BatchNorm after its convs, as in the demo detector.
# `make demo` starts the backbone from the demo Mask R-CNN it has just trained (the demo's
# stand-in for ImageNet pre-training); alone, this config trains from scratch and needs a
# longer schedule. Make the data with `python tools/make_demo_data.py`.
_base_ = '../repvit/fpn_repvit_m1_1_ade20k.py'

data_root = 'data/demo/ade'
metainfo = dict(classes=('background', 'circle', 'triangle', 'square', 'star'),
                palette=[[0, 0, 0], [220, 20, 60], [0, 128, 255], [255, 200, 0],
                         [60, 180, 75]])
crop_size = (128, 128)
max_iters = 400

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(init_cfg=None),
    neck=dict(out_channels=128, norm_cfg=dict(type='BN')),  # as the demo detector's neck
    decode_head=dict(in_channels=[128, 128, 128, 128], num_classes=5))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(512, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(512, 128), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
               img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=True,
    dataset=dict(dataset, data_prefix=dict(img_path='images/training',
                                           seg_map_path='annotations/training'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=2, persistent_workers=True,
    dataset=dict(dataset, data_prefix=dict(img_path='images/validation',
                                           seg_map_path='annotations/validation'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader

# torch's fused AdamW kernel (torch >= 2.4 on CPU): the same update in one pass
optim_wrapper = dict(optimizer=dict(lr=2e-3, fused=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=0.9, eta_min=1e-6, begin=50, end=max_iters, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters // 4,
                    max_keep_ckpts=2))
auto_scale_lr = dict(base_batch_size=8)
randomness = dict(seed=0)  # the same numbers on every run of the demo
