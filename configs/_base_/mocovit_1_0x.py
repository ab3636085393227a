# The MoCoViT-1.0x backbone of the configs in ../mocovit/, used there as
# backbone={{_base_.mocovit_1_0x}}. No MoCoViT weights were ever published, so it trains from
# scratch: BN statistics are learnt (norm_eval=False) and synchronised across GPUs, so that
# they see the whole batch rather than one GPU's images. With your own ImageNet weights:
# init_cfg=dict(type='Pretrained', checkpoint=PATH, prefix=...).
mocovit_1_0x = dict(
    _delete_=True,
    type='mmrepvit.MoCoViT',
    arch='1.0x',
    out_indices=(0, 1, 2, 3),  # stage ends at strides 4/8/16/32: 24, 40, 112, 160 channels
    frozen_stages=-1,
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    norm_eval=False,
    init_cfg=None)
