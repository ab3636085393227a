# Mask R-CNN 1x, COCO-2017, RepViT-M2.3 (published: 44.6 box AP / 40.8 mask AP)
_base_ = '../_base_/maskrcnn_repvit_1x_coco.py'
model = dict(
    backbone=dict(
        arch='m2_3', init_cfg=dict(checkpoint='checkpoints/repvit_m2_3_distill_450e.pth')),
    neck=dict(in_channels=[80, 160, 320, 640]))
