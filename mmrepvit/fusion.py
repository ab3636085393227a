"""Fusing (structural re-parameterisation) a whole detector / segmentor, and its checkpoints.
A fused checkpoint holds the backbone's fused form, which any config of the plain backbone loads;
other Conv -> BatchNorm pairs are folded in memory only (``fuse_model``): a checkpoint without
those norms would not fit the user's ordinary config.
"""
from typing import Optional

import torch
import torch.nn as nn
from mmcv.cnn import fuse_conv_bn
from torch.nn.modules.batchnorm import _BatchNorm

from .checkpoint.model_weights import FUSED_META_KEY, OLD_FUSED_META_KEY


def fuse_backbones(model: nn.Module) -> nn.Module:
    """Switch every re-parameterisable module of ``model`` to its fused form, in place."""
    for module in model.modules():
        if callable(getattr(module, 'switch_to_deploy', None)):
            module.switch_to_deploy()
    return model


@torch.no_grad()
def fuse_model(model: nn.Module) -> nn.Module:
    """Fuse ``model`` completely in place for inference (eval statistics): backbones, then
    every Conv-BN pair. Idempotent; returns ``model``."""
    fuse_backbones(model.eval())
    fuse_conv_bn(model)
    return model


def count_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


@torch.no_grad()
def fuse_checkpoint(model: nn.Module, checkpoint: dict, cfg_text: Optional[str] = None) -> dict:
    """The fused checkpoint of ``checkpoint`` (already loaded into ``model``, a plain model
    of its config): backbone fused, everything else as trained, ``meta`` kept (dataset
    classes, the config as ``meta['cfg']`` so that inferencers need no config file)."""
    fuse_backbones(model.eval())
    meta = dict(checkpoint.get('meta') or {})
    meta.pop(OLD_FUSED_META_KEY, None)
    meta[FUSED_META_KEY] = dict(backbone=True, head_norms=False)
    if cfg_text is not None:
        meta['cfg'] = cfg_text
    return dict(meta=meta, state_dict={k: v.detach().clone()
                                       for k, v in model.state_dict().items()})
