# Semantic FPN 40k, ADE20K, RepViT-M1.1 (published: 40.6 mIoU)
# Trained model of the original release (tools/test.py THIS_CONFIG URL):
#   https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m1_1_ade20k.pth
_base_ = ['../_base_/fpn_repvit_40k_ade20k.py', '../_base_/repvit_imagenet.py']
model = dict(backbone=dict(arch='m1_1', init_cfg={{_base_.imagenet.m1_1}}),
             neck=dict(in_channels=[64, 128, 256, 512]))
