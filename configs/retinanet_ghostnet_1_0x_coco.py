# Alias of mocovit/retinanet_ghostnet_1_0x_coco.py, kept beside the MoCoViT one it is compared with.
# Other projects inherit it as _base_ = 'mmrepvit::mocovit/retinanet_ghostnet_1_0x_coco.py'.
_base_ = './mocovit/retinanet_ghostnet_1_0x_coco.py'
