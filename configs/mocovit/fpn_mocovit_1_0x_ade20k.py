# Semantic FPN 40k, ADE20K, MoCoViT-1.0x: the RepViT Semantic FPN recipe (AdamW 2e-4, weight
# decay 1e-4, poly, 40k iterations, 8 GPUs x 4 images) with the backbone replaced. The MoCoViT
# paper reports no segmentation result.
_base_ = '../_base_/fpn_repvit_40k_ade20k.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmrepvit.MoCoViT',
        arch='1.0x',
        out_indices=(0, 1, 2, 3),  # stage ends at strides 4/8/16/32: 24, 40, 112, 160 channels
        frozen_stages=-1,
        # Trained from scratch, so BN statistics must be learnt (norm_eval=False), synchronised
        # across GPUs so they see the whole batch of 32 rather than 4 images.
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        # MoCoViT has no public pretrained weights: init_cfg=None trains from scratch. With your
        # own ImageNet weights: init_cfg=dict(type='Pretrained', checkpoint=PATH, prefix=...).
        init_cfg=None),
    neck=dict(in_channels=[24, 40, 112, 160], out_channels=256, num_outs=4))
