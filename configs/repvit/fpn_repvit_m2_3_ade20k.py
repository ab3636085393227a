# Semantic FPN 40k, ADE20K, RepViT-M2.3 (published: 46.1 mIoU)
# Trained model of the original release (tools/test.py THIS_CONFIG URL):
#   https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m2_3_ade20k.pth
_base_ = ['../_base_/fpn_repvit_40k_ade20k.py', '../_base_/repvit_imagenet.py']
model = dict(backbone=dict(arch='m2_3', init_cfg={{_base_.imagenet.m2_3}}),
             neck=dict(in_channels=[80, 160, 320, 640]))
