# Mask R-CNN 1x, COCO-2017, RepViT-M1.5 (published: 41.6 box AP / 38.6 mask AP)
# Trained model of the original release (tools/test.py THIS_CONFIG URL):
#   https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m1_5_coco.pth
_base_ = ['../_base_/maskrcnn_repvit_1x_coco.py', '../_base_/repvit_imagenet.py']
model = dict(backbone=dict(arch='m1_5', init_cfg={{_base_.imagenet.m1_5}}),
             neck=dict(in_channels=[64, 128, 256, 512]))
