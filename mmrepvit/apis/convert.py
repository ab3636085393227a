"""What ``tools/convert_checkpoint.py`` does: any RepViT layout -> a backbone checkpoint in ours,
or (``convert_model_checkpoint``) a whole detector / segmentor checkpoint, e.g. an mmdet 2 /
mmseg 0 one of the original release, -> a native mmdet 3 / mmseg 1 checkpoint.

The output is an mmengine-style dict ``{'meta': {...}, 'state_dict': {...}}``, so stock
mmengine ``load_checkpoint`` / ``Pretrained`` init reads it as is.
"""
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.logging import print_log

from ..checkpoint import extract_backbone_weights, load_backbone_weights, load_checkpoint_file
from ..checkpoint.backbone_weights import shapes_of
from ..checkpoint.layouts import MODEL_BACKBONE_PREFIX, find_state_dict
from ..checkpoint.model_weights import FUSED_META_KEY
from ..errors import CheckpointFormatError, CheckpointMismatchError
from ..models import RepViT
from ..version import __version__


def _backbone_model(weights, arch, fuse, logger):
    """A RepViT of ``arch`` (found from the weights when None) holding ``weights``."""
    fits = [arch] if arch else RepViT.fitting_archs(shapes_of(weights.state_dict),
                                                    weights.deploy)
    if not fits:
        raise CheckpointMismatchError(
            f'{weights.source} ({weights.layout} layout) fits none of the published RepViT '
            f'variants ({", ".join(RepViT.arch_zoo)}); pass --arch to see which keys differ')
    model = RepViT(fits[0], deploy=weights.deploy)
    load_backbone_weights(model, weights, logger=logger)  # all keys, right shapes, or raises
    if fuse:
        model.eval().switch_to_deploy()
    return fits[0], model


def _check_arch(arch):
    if arch is not None:
        RepViT.named_arch(arch)  # an unknown one: KeyError naming the valid ones


def _save(obj, dst):
    if osp.dirname(str(dst)):
        os.makedirs(osp.dirname(str(dst)), exist_ok=True)
    torch.save(obj, dst)


def dataset_meta_of(meta: dict) -> dict:
    """mmengine's ``dataset_meta`` of a checkpoint's ``meta``: its own, or the class names and
    palette an mmdet 2 / mmseg 0 checkpoint keeps as ``CLASSES`` / ``PALETTE``."""
    if meta.get('dataset_meta'):
        return dict(meta['dataset_meta'])
    out = {}
    if meta.get('CLASSES') is not None:
        out['classes'] = tuple(meta['CLASSES'])
    if meta.get('PALETTE') is not None:
        out['palette'] = [list(colour) for colour in meta['PALETTE']]
    return out


@torch.no_grad()
def convert_model_checkpoint(src: str, dst: str, arch: Optional[str] = None,
                             fuse: bool = False, logger: str = 'current') -> dict:
    """A whole detector / segmentor checkpoint -> ``dst``: the backbone (under ``backbone.``)
    checked against ``arch`` and in this project's layout (fused with ``fuse``), every other
    key as it is, the class names and palette as ``meta['dataset_meta']``; optimizer and apex
    ``amp`` state are dropped. Returns the saved ``meta``."""
    _check_arch(arch)
    checkpoint = load_checkpoint_file(src)
    source = f'checkpoint {str(src)!r}'
    state_dict, _ = find_state_dict(checkpoint, source)
    rest = {k: v for k, v in state_dict.items() if not k.startswith(MODEL_BACKBONE_PREFIX)}
    if len(rest) == len(state_dict) or not rest:
        raise CheckpointFormatError(
            f'{source} is not a whole detector / segmentor checkpoint (keys under '
            f'"{MODEL_BACKBONE_PREFIX}" and others): convert it without --whole-model')
    weights = extract_backbone_weights(state_dict, MODEL_BACKBONE_PREFIX, source=source)
    arch, model = _backbone_model(weights, arch, fuse, logger)
    old_meta = checkpoint.get('meta') or {}
    meta = dict(dataset_meta=dataset_meta_of(old_meta), arch=arch, deploy=bool(model.deploy),
                source=osp.basename(str(src)), source_layout=weights.layout,
                mmrepvit_version=__version__,
                source_meta={k: old_meta[k] for k in ('mmdet_version', 'mmseg_version',
                                                      'mmcv_version', 'epoch', 'iter')
                             if k in old_meta})
    if model.deploy:
        meta[FUSED_META_KEY] = dict(backbone=True, head_norms=False)
    backbone = {MODEL_BACKBONE_PREFIX + k: v for k, v in model.state_dict().items()}
    _save(dict(meta=meta, state_dict={**backbone, **rest}), dst)
    print_log(f'RepViT: wrote the whole model ({"fused " if model.deploy else ""}{arch} '
              f'backbone, {len(rest)} other keys) to {dst}', logger=logger)
    return meta


@torch.no_grad()
def convert_checkpoint(src: str, dst: str, arch: Optional[str] = None, fuse: bool = False,
                       prefix: Optional[str] = None, logger: str = 'current') -> dict:
    """Read ``src`` (any layout), check it against ``arch`` (found from the weights when
    None), optionally fuse it, and save it to ``dst``. Returns the saved ``meta``."""
    _check_arch(arch)
    weights = extract_backbone_weights(load_checkpoint_file(src), prefix,
                                       source=f'checkpoint {str(src)!r}')
    arch, model = _backbone_model(weights, arch, fuse, logger)
    meta = dict(arch=arch, deploy=bool(model.deploy), source=osp.basename(str(src)),
                source_layout=weights.layout, mmrepvit_version=__version__)
    _save(dict(meta=meta, state_dict=model.state_dict()), dst)
    print_log(f'RepViT: wrote {"fused " if model.deploy else ""}{arch} backbone checkpoint '
              f'{dst}', logger=logger)
    return meta
