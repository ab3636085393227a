# Alias of mocovit/retinanet_mocovit_1_0x_coco.py, kept for the documented commands.
# Other projects inherit it as _base_ = 'mmrepvit::mocovit/retinanet_mocovit_1_0x_coco.py'.
_base_ = './mocovit/retinanet_mocovit_1_0x_coco.py'
