# Semantic FPN 40k on ADE20K with a RepViT backbone: the published recipe (8 GPUs x 4 images)
# as a diff on mmseg's own Semantic FPN R50 ADE20K config.
_base_ = 'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['mmrepvit'], allow_failed_imports=False)

crop_size = (512, 512)
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmrepvit.RepViT',
        arch='m1_1',
        out_indices=(0, 1, 2, 3),
        taps='segmentation',  # the stage ends, as the original Semantic FPN configs
        # Override with --cfg-options model.backbone.init_cfg.checkpoint=PATH (or None).
        init_cfg=dict(type='Pretrained',
                      checkpoint='https://github.com/THU-MIG/RepViT/releases/download/v1.0/'
                                 'repvit_m1_1_distill_300e.pth')),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=256, num_outs=4),
    decode_head=dict(num_classes=150))

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),  # both sides a multiple of 32
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=4)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=1e-6, begin=0, end=40000, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=4000)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4000))
# the recipe's total batch: 8 GPUs x 4 images (enable with --auto-scale-lr)
auto_scale_lr = dict(enable=False, base_batch_size=32)
# stop at the first NaN/inf loss, naming the iteration and the last good checkpoint
custom_hooks = [dict(type='mmrepvit.NaNGuardHook')]
