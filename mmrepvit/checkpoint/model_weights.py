"""Loading a whole detector / segmentor checkpoint strictly: every key of the model, the right
shapes, nothing left over, or an error naming what does not fit (the toolboxes' ``strict=False``
only logs it, and another model's checkpoint then runs and predicts garbage).
"""
from typing import Union

import torch.nn as nn
from mmengine.model import is_model_wrapper

from ..errors import CheckpointMismatchError
from .backbone_weights import shape_differences, shapes_of
from .layouts import find_state_dict, key_groups, replace_under, under
from .safe_load import load_checkpoint_file

# meta[FUSED_META_KEY] of a fused checkpoint: which parts are fused
FUSED_META_KEY = 'mmrepvit_fused'
# what mmrepvit < 0.2 wrote: backbone fused *and* head BatchNorms folded (needs its own config)
OLD_FUSED_META_KEY = 'mmrepvit_deploy'


def _top_groups(keys) -> str:
    return ', '.join(sorted(group + '*' for group in key_groups(keys)))


def to_model_layout(model: nn.Module, state_dict: dict) -> dict:
    """``state_dict`` with each backbone's keys in the backbone's own layout (e.g. the original
    release's ``backbone.features.N...`` of an mmdet 2 / mmseg 0 checkpoint renamed), as its
    load hook renames them in any loader; here before loading, to compare keys strictly. A
    backbone is a submodule with ``to_own_layout``."""
    state_dict = dict(state_dict)
    for name, module in model.named_modules():
        own = under(state_dict, name + '.')
        if name and own and callable(getattr(module, 'to_own_layout', None)):
            replace_under(state_dict, name + '.', own, module.to_own_layout(own))
    return state_dict


def load_model_checkpoint(model: nn.Module, checkpoint: Union[str, dict],
                          source: str = None) -> dict:
    """Load ``checkpoint`` (a path or a loaded dict) into ``model`` strictly; returns the
    loaded checkpoint dict. Backbones adopt the checkpoint's form (plain or fused) first."""
    if isinstance(checkpoint, str):
        source = source or f'checkpoint {checkpoint!r}'
        checkpoint = load_checkpoint_file(checkpoint)
    source = source or 'the checkpoint'
    state_dict, _ = find_state_dict(checkpoint, source)
    model = model.module if is_model_wrapper(model) else model
    state_dict = to_model_layout(model, state_dict)
    try:
        model.load_state_dict(state_dict, strict=False)
    except CheckpointMismatchError as e:  # a backbone's own check, keys relative to it
        raise CheckpointMismatchError(f'{source}: {e}') from None
    except RuntimeError:  # torch: keys of the wrong shape; named below
        pass
    # after loading: backbones have taken the checkpoint's form (plain or fused)
    given, expected = shapes_of(state_dict), shapes_of(model.state_dict())
    if given != expected:
        lines = [f'{source} does not fit the model built from the config '
                 f'({type(model).__name__}); refusing to run it half-loaded.']
        lines += shape_differences(given, expected, target='model')
        lines.append(f'The checkpoint holds {_top_groups(given)}; the model has '
                     f'{_top_groups(expected)}. Is it the checkpoint of this config?')
        if (checkpoint.get('meta') or {}).get(OLD_FUSED_META_KEY):
            lines.append('It was fused by mmrepvit < 0.2 (head BatchNorms folded too): fuse '
                         'the plain checkpoint again with tools/fuse_checkpoint.py.')
        raise CheckpointMismatchError('\n'.join(lines))
    return checkpoint
