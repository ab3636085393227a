# Mask R-CNN 1x, COCO-2017, MoCoViT-1.0x: the RepViT Mask R-CNN recipe (AdamW 2e-4, weight decay
# 0.05, 12 epochs, 8 GPUs x 2 images) with the backbone replaced. The MoCoViT paper reports no
# Mask R-CNN result.
_base_ = ['../_base_/maskrcnn_repvit_1x_coco.py', '../_base_/mocovit_1_0x.py']

model = dict(
    backbone={{_base_.mocovit_1_0x}},
    neck=dict(in_channels=[24, 40, 112, 160], out_channels=256, num_outs=5))
