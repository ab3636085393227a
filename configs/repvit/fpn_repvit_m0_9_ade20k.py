# Semantic FPN 40k, ADE20K, RepViT-M0.9 (published: not reported)
_base_ = ['../_base_/fpn_repvit_40k_ade20k.py', '../_base_/repvit_imagenet.py']
model = dict(backbone=dict(arch='m0_9', init_cfg={{_base_.imagenet.m0_9}}),
             neck=dict(in_channels=[48, 96, 192, 384]))
