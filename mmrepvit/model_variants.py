"""The models the analysis and export tools measure, built unfused, fused, fused + CPU fast
path or compiled (``VARIANTS``), with synthetic inputs. A target is an arch (``m1_1``,
``mocovit-1.0x``) or a config (a file, or e.g. ``mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py``);
weights are random unless a checkpoint is given."""
import copy
import logging
import os.path as osp

import torch
from mmengine.hub import get_config
from mmengine.logging import MMLogger
from torch.nn.modules.batchnorm import _BatchNorm

from .checkpoint import load_backbone_checkpoint, load_model_checkpoint
from .config import build_model, load_config, toolbox_of
from .cpu_fast_path import optimize_for_cpu
from .fusion import fuse_backbones, fuse_model
from .models import MoCoViT, MoCoViTClassifier, RepViT, RepViTClassifier

# fused-backbone: what a fused checkpoint loads as (head norms kept); fused: everything folded
VARIANTS = ('unfused', 'fused-backbone', 'fused', 'fast', 'compiled')
# how an arch name says its backbone -> (backbone, its ImageNet model); RepViT's names are bare
BACKBONES = {'mocovit-': (MoCoViT, MoCoViTClassifier), '': (RepViT, RepViTClassifier)}
# the input size each kind of target is measured at unless told
DEFAULT_SIZES = {'backbone': (224, 224), 'mmdet': (800, 1333), 'mmseg': (512, 512)}


def _backbone_of(spec):
    """``(backbone class, classifier class, arch)`` an arch name asks for."""
    prefix = next(p for p in BACKBONES if spec.startswith(p))
    return (*BACKBONES[prefix], spec[len(prefix):])


def target_kind(spec):
    """'backbone' for an arch name, else the config's toolbox ('mmdet' or 'mmseg')."""
    backbone, _, arch = _backbone_of(spec)
    if arch in backbone.arch_zoo:
        return 'backbone'
    if osp.isfile(spec) or '::' in spec:
        return toolbox_of(load_target_config(spec))
    archs = '; '.join(f'{cls.__name__}: {", ".join(p + a for a in cls.arch_zoo)}'
                      for p, (cls, _) in BACKBONES.items())
    raise ValueError(f'{spec!r} is neither a backbone ({archs}) nor a config file (a path, or '
                     f'e.g. mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py)')


def load_target_config(spec, cfg_options=None):
    """A config file or a toolbox's own (``mmdet::...``), pretrained initialisation removed."""
    if osp.isfile(spec):
        cfg = load_config(spec, cfg_options)
    else:
        cfg = get_config(spec)
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
    if cfg.model.get('pretrained'):
        cfg.model.pretrained = None
    for part in ('backbone', 'neck'):
        if cfg.model.get(part) and cfg.model[part].get('init_cfg'):
            cfg.model[part].init_cfg = None
    return cfg


def build_backbone(spec, classifier=False, **kwargs):
    """A backbone by arch name; ``classifier=True``: its ImageNet model (1000-class head)."""
    backbone, classifier_model, arch = _backbone_of(spec)
    return (classifier_model if classifier else backbone)(arch, **kwargs)


def build_target(spec, variant='unfused', classifier=False, cfg_options=None, seed=0,
                 checkpoint=None):
    """The model of ``spec`` in eval mode, as ``variant`` (one of ``VARIANTS``), with the
    weights of ``checkpoint`` (any layout the loaders know), else random with trained-like
    norms (``randomize_norms``: zero-initialised residual norms would make fusing a no-op)."""
    if variant not in VARIANTS:
        raise ValueError(f'variant={variant!r}; valid: {", ".join(VARIANTS)}')
    torch.manual_seed(seed)
    kind = target_kind(spec)
    if kind == 'backbone':
        if checkpoint is not None and classifier:
            raise ValueError('--checkpoint loads backbone weights; the classifier head is not '
                             'part of them')
        model = build_backbone(spec, classifier=classifier)
        if checkpoint is not None:  # loaded strictly, in the checkpoint's form (fused or not)
            load_backbone_checkpoint(model, checkpoint)
    else:
        model = build_model(load_target_config(spec, cfg_options))
        if checkpoint is not None:
            load_model_checkpoint(model, str(checkpoint))
        else:  # the toolbox's own initialisers (heads, FPN), quietly
            logger = MMLogger.get_current_instance()
            level = logger.level
            logger.setLevel(logging.WARNING)
            try:
                model.init_weights()
            finally:
                logger.setLevel(level)
    if checkpoint is None:
        randomize_norms(model, kind, seed)
    model.eval()
    if variant == 'fused-backbone':
        fuse_backbones(model)
    elif variant != 'unfused':
        fuse_model(model)
    if variant in ('fast', 'compiled'):
        optimize_for_cpu(model, compile=variant == 'compiled')
    return model


@torch.no_grad()
def randomize_norms(model, kind='backbone', seed=0, size=(128, 128)):
    """Trained-like norms: running statistics of a random image, scales in [0.5, 1.5), shifts
    around 0; norms built with zero scale (residual-branch ends) get scales in [0, 0.25), as
    full-strength branches would make activations grow with depth far beyond a trained
    network's."""
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return model
    saved = [(m, m.training, m.momentum) for m in norms]
    for m in norms:
        n = m.num_features
        if m.affine:
            residual_end = not m.weight.any()
            scale = torch.rand(n, generator=g)
            m.weight.copy_(scale * 0.25 if residual_end else scale + 0.5)
            m.bias.copy_(torch.randn(n, generator=g) * 0.1)
        m.reset_running_stats()
        m.momentum = None  # cumulative: one batch sets the statistics exactly
    model.eval()
    for m in norms:
        m.train()
    x = torch.randn(2, 3, *size, generator=g)
    if kind == 'backbone':
        model(x)
    elif kind == 'mmdet':
        model.extract_feat(x)
    else:
        model._forward(x)
    for m, training, momentum in saved:
        m.train(training)
        m.momentum = momentum
    return model


def synthetic_batch(kind, size, batch_size=1, seed=0):
    """Backbone: a float tensor (B, 3, H, W). Detector / segmentor: the dataloader's dict of
    uint8 images and data samples carrying the metainfo their test step reads."""
    h, w = size
    g = torch.Generator().manual_seed(seed)
    if kind == 'backbone':
        return torch.randn(batch_size, 3, h, w, generator=g)
    if kind == 'mmdet':
        from mmdet.structures import DetDataSample as Sample
    else:
        from mmseg.structures import SegDataSample as Sample
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), scale_factor=(1.0, 1.0),
                img_id=0, img_path=None)
    inputs = [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
              for _ in range(batch_size)]
    return dict(inputs=inputs, data_samples=[Sample(metainfo=dict(meta))
                                             for _ in range(batch_size)])


def make_call(kind, model, batch, mode='predict'):
    """A zero-argument callable running one inference of ``model`` on ``batch``: a whole
    model's test step with its pre- and post-processing (``mode='predict'``), or only its
    network on the preprocessed batch (``'tensor'``)."""
    if kind == 'backbone':
        return lambda: model(batch)
    if mode == 'predict':
        return lambda: model.test_step(copy.copy(batch))
    if mode != 'tensor':
        raise ValueError(f'mode={mode!r}; valid: predict, tensor')
    with torch.inference_mode():
        data = model.data_preprocessor(copy.copy(batch), False)
    return lambda: model._forward(data['inputs'], data['data_samples'])


def describe_outputs(kind, outputs, mode='predict'):
    """What one call produced, to show that compared models did comparable work: detections
    per image (mmdet), class maps' shapes (mmseg), else the output tensors' shapes."""
    if kind == 'mmdet' and mode == 'predict':
        return dict(detections=[len(s.pred_instances) for s in outputs])
    leaves = [t for t in torch.utils._pytree.tree_leaves(outputs) if torch.is_tensor(t)]
    if kind == 'mmseg' and mode == 'predict':
        leaves = [s.pred_sem_seg.data for s in outputs]
    return dict(output_shapes=[list(t.shape) for t in leaves])
