# Mask R-CNN 1x, COCO-2017, RepViT-M1.0 (published: not reported)
_base_ = ['../_base_/maskrcnn_repvit_1x_coco.py', '../_base_/repvit_imagenet.py']
model = dict(backbone=dict(arch='m1_0', init_cfg={{_base_.imagenet.m1_0}}),
             neck=dict(in_channels=[56, 112, 224, 448]))
