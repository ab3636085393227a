# Alias of mocovit/fpn_mocovit_1_0x_ade20k.py, kept for the documented commands.
# Other projects inherit it as _base_ = 'mmrepvit::mocovit/fpn_mocovit_1_0x_ade20k.py'.
_base_ = './mocovit/fpn_mocovit_1_0x_ade20k.py'
