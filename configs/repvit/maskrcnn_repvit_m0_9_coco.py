# Mask R-CNN 1x, COCO-2017, RepViT-M0.9 (published: not reported)
_base_ = '../_base_/maskrcnn_repvit_1x_coco.py'
model = dict(
    backbone=dict(
        arch='m0_9',
        init_cfg=dict(checkpoint='https://github.com/THU-MIG/RepViT/releases/download/v1.0/'
                                 'repvit_m0_9_distill_300e.pth')),
    neck=dict(in_channels=[48, 96, 192, 384]))
