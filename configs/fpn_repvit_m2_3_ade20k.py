# Alias of repvit/fpn_repvit_m2_3_ade20k.py, kept for the documented commands.
# Other projects inherit it as _base_ = 'mmrepvit::repvit/fpn_repvit_m2_3_ade20k.py'.
_base_ = './repvit/fpn_repvit_m2_3_ade20k.py'
