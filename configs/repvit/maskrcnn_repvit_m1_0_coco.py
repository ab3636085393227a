# Mask R-CNN 1x, COCO-2017, RepViT-M1.0 (published: not reported)
_base_ = '../_base_/maskrcnn_repvit_1x_coco.py'
model = dict(
    backbone=dict(
        arch='m1_0',
        init_cfg=dict(checkpoint='https://github.com/THU-MIG/RepViT/releases/download/v1.0/'
                                 'repvit_m1_0_distill_300e.pth')),
    neck=dict(in_channels=[56, 112, 224, 448]))
