# Semantic FPN 40k, ADE20K, RepViT-M2.3 (published: 46.1 mIoU)
_base_ = '../_base_/fpn_repvit_40k_ade20k.py'
model = dict(
    backbone=dict(
        arch='m2_3', init_cfg=dict(checkpoint='checkpoints/repvit_m2_3_distill_450e.pth')),
    neck=dict(in_channels=[80, 160, 320, 640]))
