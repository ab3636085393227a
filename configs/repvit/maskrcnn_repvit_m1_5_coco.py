# Mask R-CNN 1x, COCO-2017, RepViT-M1.5 (published: 41.6 box AP / 38.6 mask AP)
_base_ = '../_base_/maskrcnn_repvit_1x_coco.py'
model = dict(
    backbone=dict(
        arch='m1_5', init_cfg=dict(checkpoint='checkpoints/repvit_m1_5_distill_300e.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
