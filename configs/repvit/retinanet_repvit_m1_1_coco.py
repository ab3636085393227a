# RetinaNet 1x, COCO-2017, RepViT-M1.1 (not reported by the RepViT paper; the MoCoViT setting)
_base_ = '../_base_/retinanet_repvit_1x_coco.py'
