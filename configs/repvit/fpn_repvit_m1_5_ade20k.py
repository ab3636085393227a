# Semantic FPN 40k, ADE20K, RepViT-M1.5 (published: 43.6 mIoU)
_base_ = '../_base_/fpn_repvit_40k_ade20k.py'
model = dict(
    backbone=dict(
        arch='m1_5', init_cfg=dict(checkpoint='checkpoints/repvit_m1_5_distill_300e.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
