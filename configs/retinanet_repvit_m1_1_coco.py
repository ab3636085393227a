# Alias of repvit/retinanet_repvit_m1_1_coco.py, kept for the documented commands.
# Other projects inherit it as _base_ = 'mmrepvit::repvit/retinanet_repvit_m1_1_coco.py'.
_base_ = './repvit/retinanet_repvit_m1_1_coco.py'
