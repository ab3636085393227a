# RetinaNet 1x, COCO-2017, MoCoViT-1.0x: the setting of the MoCoViT paper (+2.1 AP over GhostNet),
# whose exact hyper-parameters are not public, so mmdet's stock RetinaNet R50-FPN 1x recipe
# (SGD 0.01, 8 GPUs x 2 images) with the backbone replaced.
_base_ = '../_base_/retinanet_repvit_1x_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmrepvit.MoCoViT',
        arch='1.0x',
        out_indices=(0, 1, 2, 3),  # stage ends at strides 4/8/16/32: 24, 40, 112, 160 channels
        frozen_stages=-1,
        # Trained from scratch, so BN statistics must be learnt (norm_eval=False), synchronised
        # across GPUs so they see the whole batch of 16 rather than 2 images.
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        # MoCoViT has no public pretrained weights: init_cfg=None trains from scratch. With your
        # own ImageNet weights: init_cfg=dict(type='Pretrained', checkpoint=PATH, prefix=...).
        init_cfg=None),
    # RetinaNet's FPN starts at stride 8 (start_level=1), as in the stock config
    neck=dict(in_channels=[24, 40, 112, 160]))
