# Semantic FPN 40k, ADE20K, MoCoViT-1.0x: the RepViT Semantic FPN recipe (AdamW 2e-4, weight
# decay 1e-4, poly, 40k iterations, 8 GPUs x 4 images) with the backbone replaced. The MoCoViT
# paper reports no segmentation result.
_base_ = ['../_base_/fpn_repvit_40k_ade20k.py', '../_base_/mocovit_1_0x.py']

model = dict(
    backbone={{_base_.mocovit_1_0x}},
    neck=dict(in_channels=[24, 40, 112, 160], out_channels=256, num_outs=4))
