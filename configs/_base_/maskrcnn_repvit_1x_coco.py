# Mask R-CNN + FPN 1x on COCO-2017 with a RepViT backbone: the published recipe (RepViT paper,
# trained on 8 GPUs x 2 images) as a diff on mmdet's own Mask R-CNN R50-FPN 1x config.
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', './repvit_detection_backbone.py']
custom_imports = dict(imports=['mmrepvit'], allow_failed_imports=False)

model = dict(
    backbone={{_base_.repvit_detection_backbone}},
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=256, num_outs=5))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
# the recipe's total batch: 8 GPUs x 2 images (enable with --auto-scale-lr)
auto_scale_lr = dict(enable=False, base_batch_size=16)
# stop at the first NaN/inf loss, naming the iteration and the last good checkpoint
custom_hooks = [dict(type='mmrepvit.NaNGuardHook')]
