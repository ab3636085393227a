# Mask R-CNN 1x, COCO-2017, RepViT-M1.1 (published: 39.8 box AP / 37.2 mask AP)
_base_ = '../_base_/maskrcnn_repvit_1x_coco.py'
model = dict(
    backbone=dict(
        arch='m1_1', init_cfg=dict(checkpoint='checkpoints/repvit_m1_1_distill_300e.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
