"""What ``tools/convert_checkpoint.py`` does: any known layout -> a backbone checkpoint in ours.

The output is an mmengine-style dict ``{'meta': {...}, 'state_dict': {...}}`` with unprefixed
backbone keys, so stock mmengine ``load_checkpoint`` / ``Pretrained`` init reads it as is.
"""
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.logging import print_log

from ..errors import CheckpointMismatchError
from ..models.backbones.base import shapes_of
from ..models.backbones.repvit import ARCH_ZOO, RepViT
from ..version import __version__
from .loading import extract_backbone_weights, load_backbone_weights
from .safe_load import load_checkpoint_file


def _pick_arch(weights):
    fits = RepViT.fitting_archs(shapes_of(weights.state_dict), weights.deploy)
    if not fits:
        raise CheckpointMismatchError(
            f'{weights.source} ({weights.layout} layout) fits none of the published RepViT '
            f'variants ({", ".join(ARCH_ZOO)}); pass --arch to see which keys differ')
    return fits[0]


@torch.no_grad()
def convert_checkpoint(src: str, dst: str, arch: Optional[str] = None, fuse: bool = False,
                       prefix: Optional[str] = None, logger: str = 'current') -> dict:
    """Read ``src`` (any layout), check it against ``arch`` (found from the weights when
    None), optionally fuse it, and save it to ``dst``. Returns the saved ``meta``."""
    if arch is not None and arch not in ARCH_ZOO:
        raise KeyError(f'Unknown RepViT arch {arch!r}; valid: {", ".join(ARCH_ZOO)}')
    weights = extract_backbone_weights(load_checkpoint_file(src), prefix,
                                       source=f'checkpoint {str(src)!r}')
    arch = arch or _pick_arch(weights)
    model = RepViT(arch, deploy=weights.deploy)
    load_backbone_weights(model, weights, logger=logger)  # all keys, right shapes, or raises
    if fuse:
        model.eval().switch_to_deploy()
    meta = dict(arch=arch, deploy=bool(model.deploy), source=osp.basename(str(src)),
                source_layout=weights.layout, mmrepvit_version=__version__)
    if osp.dirname(str(dst)):
        os.makedirs(osp.dirname(str(dst)), exist_ok=True)
    torch.save(dict(meta=meta, state_dict=model.state_dict()), dst)
    print_log(f'RepViT: wrote {"fused " if model.deploy else ""}{arch} backbone checkpoint '
              f'{dst}', logger=logger)
    return meta
