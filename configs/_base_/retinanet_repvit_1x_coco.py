# RetinaNet + FPN 1x on COCO-2017 (the setting MoCoViT reports in): mmdet's stock RetinaNet
# R50-FPN 1x recipe with the backbone replaced.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', './repvit_detection_backbone.py']
custom_imports = dict(imports=['mmrepvit'], allow_failed_imports=False)

model = dict(
    backbone={{_base_.repvit_detection_backbone}},
    # RetinaNet's FPN starts at stride 8 (start_level=1), as in the stock config
    neck=dict(in_channels=[64, 128, 256, 512]))
# stock schedule: 8 GPUs x 2 images
auto_scale_lr = dict(enable=False, base_batch_size=16)
# stop at the first NaN/inf loss, naming the iteration and the last good checkpoint
custom_hooks = [dict(type='mmrepvit.NaNGuardHook')]
