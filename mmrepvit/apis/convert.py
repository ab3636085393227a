"""What ``tools/convert_checkpoint.py`` does: any RepViT layout -> a backbone checkpoint in ours,
or a whole mmdet 2 / mmseg 0 detector / segmentor checkpoint -> a native mmdet 3 / mmseg 1 one,
each an mmengine-style ``{'meta', 'state_dict'}`` dict that stock loaders read as is."""
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
    """A whole detector / segmentor checkpoint -> ``dst``: the backbone checked against
    ``arch``, in our layout (fused with ``fuse``), other keys as they are, class names and
    palette as ``meta['dataset_meta']``, optimizer state dropped. Returns the saved ``meta``."""
    return _convert(src, dst, arch, fuse, MODEL_BACKBONE_PREFIX, logger, whole_model=True)


@torch.no_grad()
def convert_checkpoint(src: str, dst: str, arch: Optional[str] = None, fuse: bool = False,
                       prefix: Optional[str] = None, logger: str = 'current') -> dict:
    """Read ``src`` (any layout), check it against ``arch`` (found from the weights when
    None), optionally fuse it, and save it to ``dst``. Returns the saved ``meta``."""
    return _convert(src, dst, arch, fuse, prefix, logger)


def _convert(src, dst, arch, fuse, prefix, logger, whole_model=False):
    if arch is not None:
        RepViT.named_arch(arch)  # an unknown one: KeyError naming the valid ones
    checkpoint = load_checkpoint_file(src)
    source = f'checkpoint {str(src)!r}'
    weights_from, rest = checkpoint, {}
    if whole_model:
        weights_from, _ = find_state_dict(checkpoint, source)
        rest = {k: v for k, v in weights_from.items() if not k.startswith(prefix)}
        if len(rest) == len(weights_from) or not rest:
            raise CheckpointFormatError(
                f'{source} is not a whole detector / segmentor checkpoint (keys under '
                f'"{prefix}" and others): convert it without --whole-model')
    weights = extract_backbone_weights(weights_from, prefix, source=source)
    fits = [arch] if arch else RepViT.fitting_archs(shapes_of(weights.state_dict),
                                                    weights.deploy)
    if not fits:
        raise CheckpointMismatchError(
            f'{weights.source} ({weights.layout} layout) fits none of the published RepViT '
            f'variants ({", ".join(RepViT.arch_zoo)}); pass --arch to see which keys differ')
    arch = fits[0]
    model = RepViT(arch, deploy=weights.deploy)
    load_backbone_weights(model, weights, logger=logger)  # all keys, right shapes, or raises
    if fuse:
        model.eval().switch_to_deploy()
    fused = 'fused ' if model.deploy else ''
    meta = dict(arch=arch, deploy=bool(model.deploy), source=osp.basename(str(src)),
                source_layout=weights.layout, mmrepvit_version=__version__)
    state_dict = model.state_dict()
    if whole_model:
        old_meta = checkpoint.get('meta') or {}
        meta = dict(dataset_meta=dataset_meta_of(old_meta), **meta, source_meta={
            k: old_meta[k] for k in ('mmdet_version', 'mmseg_version', 'mmcv_version', 'epoch',
                                     'iter') if k in old_meta})
        if model.deploy:
            meta[FUSED_META_KEY] = dict(backbone=True, head_norms=False)
        state_dict = {**{prefix + k: v for k, v in state_dict.items()}, **rest}
        what = f'the whole model ({fused}{arch} backbone, {len(rest)} other keys)'
    else:
        what = f'{fused}{arch} backbone checkpoint'
    if osp.dirname(str(dst)):
        os.makedirs(osp.dirname(str(dst)), exist_ok=True)
    torch.save(dict(meta=meta, state_dict=state_dict), dst)
    print_log(f'RepViT: wrote {what} {"to " if whole_model else ""}{dst}', logger=logger)
    return meta
