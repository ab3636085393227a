# Alias of repvit/maskrcnn_repvit_m0_9_coco.py, kept for the documented commands.
# Other projects inherit it as _base_ = 'mmrepvit::repvit/maskrcnn_repvit_m0_9_coco.py'.
_base_ = './repvit/maskrcnn_repvit_m0_9_coco.py'
