# The ImageNet weights of the original release (distilled) that every RepViT detector and
# segmentor here starts from, by variant: `init_cfg={{_base_.imagenet.m1_1}}`. M2.3 starts
# from its 450-epoch weights, as the original detection and segmentation configs do.
# Downloaded once into torch hub's cache; MMREPVIT_RELEASE_MIRROR points them at a mirror,
# --cfg-options model.backbone.init_cfg.checkpoint=PATH at a local file.
release = 'https://github.com/THU-MIG/RepViT/releases/download/v1.0/'
imagenet = {
    arch: dict(type='Pretrained', checkpoint=f'{release}repvit_{arch}_distill_{epochs}e.pth')
    for arch, epochs in (('m0_6', 300), ('m0_9', 300), ('m1_0', 300), ('m1_1', 300),
                         ('m1_5', 300), ('m2_3', 450))
}
