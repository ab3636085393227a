# The RepViT-M1.1 backbone of the COCO detectors (./maskrcnn_repvit_1x_coco.py,
# ./retinanet_repvit_1x_coco.py), used there as backbone={{_base_.repvit_detection_backbone}}.
repvit_detection_backbone = dict(
    _delete_=True,
    type='mmrepvit.RepViT',
    arch='m1_1',
    out_indices=(0, 1, 2, 3),
    taps='detection',  # one row before each stage end, as the original detection configs
    frozen_stages=-1,
    norm_eval=True,  # BatchNorm statistics frozen at their ImageNet values
    # ImageNet weights (any published layout; see README). Override with
    # --cfg-options model.backbone.init_cfg.checkpoint=PATH, or init_cfg=None for scratch.
    init_cfg=dict(type='Pretrained',
                  checkpoint='https://github.com/THU-MIG/RepViT/releases/download/v1.0/'
                             'repvit_m1_1_distill_300e.pth'))
