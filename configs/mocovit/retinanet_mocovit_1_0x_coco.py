# RetinaNet 1x, COCO-2017, MoCoViT-1.0x: the setting of the MoCoViT paper (+2.1 AP over GhostNet),
# whose exact hyper-parameters are not public, so mmdet's stock RetinaNet R50-FPN 1x recipe
# (SGD 0.01, 8 GPUs x 2 images) with the backbone replaced.
_base_ = ['../_base_/retinanet_repvit_1x_coco.py', '../_base_/mocovit_1_0x.py']

model = dict(
    backbone={{_base_.mocovit_1_0x}},
    # RetinaNet's FPN starts at stride 8 (start_level=1), as in the stock config
    neck=dict(in_channels=[24, 40, 112, 160]))
