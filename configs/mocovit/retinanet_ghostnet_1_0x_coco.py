# RetinaNet 1x, COCO-2017, GhostNet-1.0x: the baseline of the MoCoViT paper's RetinaNet claim
# (MoCoViT-1.0x: +2.1 AP). The recipe of retinanet_mocovit_1_0x_coco.py, MTBs replaced by
# GhostNet's own bottlenecks (same stages, same output widths), so the two differ only there.
_base_ = './retinanet_mocovit_1_0x_coco.py'

model = dict(backbone=dict(type='mmrepvit.GhostNet'))
