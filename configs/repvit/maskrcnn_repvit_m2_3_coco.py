# Mask R-CNN 1x, COCO-2017, RepViT-M2.3 (published: 44.6 box AP / 40.8 mask AP)
# Trained model of the original release (tools/test.py THIS_CONFIG URL):
#   https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m2_3_coco.pth
_base_ = ['../_base_/maskrcnn_repvit_1x_coco.py', '../_base_/repvit_imagenet.py']
model = dict(backbone=dict(arch='m2_3', init_cfg={{_base_.imagenet.m2_3}}),
             neck=dict(in_channels=[80, 160, 320, 640]))
