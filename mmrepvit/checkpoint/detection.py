"""Finding the weights inside a loaded checkpoint and recognising which layout they are in."""
import re
from collections import Counter
from collections.abc import Mapping

import torch

from ..errors import CheckpointFormatError
from ..models.backbones.published_layouts import published_layout

# Every layout the loader understands: the published ones (see the spec's "Checkpoints in the
# wild") and this project's own, unfused and fused (``deploy=True``).
LAYOUTS = ('official', 'official_legacy', 'timm', 'mmrepvit', 'mmrepvit_deploy')
# Where checkpoints keep their weights: mmengine's ``state_dict``, the original's ``model``.
CONTAINER_KEYS = ('state_dict', 'model')
# mmdet / mmseg models hold the backbone under this prefix.
MODEL_BACKBONE_PREFIX = 'backbone.'


def _is_state_dict(obj):
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _describe(obj):
    if isinstance(obj, Mapping):
        return 'a dict with keys ' + ', '.join(repr(k) for k in list(obj)[:8]) + \
            (' ...' if len(obj) > 8 else '')
    return f'a {type(obj).__name__}'


def find_state_dict(checkpoint, source='checkpoint'):
    """``(state_dict, container)``: the weights at the top level or under ``state_dict`` /
    ``model`` (container is then that key, else ``''``)."""
    if isinstance(checkpoint, Mapping):
        for key in CONTAINER_KEYS:
            if _is_state_dict(checkpoint.get(key)):
                return dict(checkpoint[key]), key
        if _is_state_dict(checkpoint):
            return dict(checkpoint), ''
    raise CheckpointFormatError(
        f'{source} holds no weights: it is {_describe(checkpoint)}. Expected a state_dict '
        f'(names -> tensors) at the top level or under one of {CONTAINER_KEYS}')


def key_groups(state_dict):
    """Counts of the first name component of each key, e.g. ``{'backbone.': 210, ...}``."""
    return Counter(k.split('.', 1)[0] + '.' for k in state_dict)


def strip_prefix(state_dict, prefix):
    """The keys under ``prefix`` with it removed; ``(selected, {other group: count})``."""
    selected = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    others = key_groups({k: v for k, v in state_dict.items() if not k.startswith(prefix)})
    return selected, dict(others)


def select_backbone(state_dict, prefix=None, source='checkpoint'):
    """``(weights, prefix used, ignored key groups)``.

    ``prefix`` given: keep only the keys under it (an error if there are none). Otherwise a
    DDP ``module.`` prefix is removed and, in a detector/segmentor checkpoint, the keys under
    ``backbone.`` are kept.
    """
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        selected, others = strip_prefix(state_dict, prefix)
        if not selected:
            raise CheckpointFormatError(
                f'{source}: no key starts with prefix={prefix!r}; its keys start with '
                f'{dict(key_groups(state_dict))}')
        return selected, prefix, others
    if all(k.startswith('module.') for k in state_dict):
        state_dict = {k[len('module.'):]: v for k, v in state_dict.items()}
    if any(k.startswith(MODEL_BACKBONE_PREFIX) for k in state_dict):
        selected, others = strip_prefix(state_dict, MODEL_BACKBONE_PREFIX)
        return selected, MODEL_BACKBONE_PREFIX, others
    return state_dict, '', {}


def detect_layout(state_dict, source='checkpoint'):
    """Which of ``LAYOUTS`` the (backbone) keys are in."""
    keys = list(state_dict)
    published = published_layout(keys)
    if published:
        return published
    if any(k.startswith(('stem.0.', 'blocks.')) for k in keys):
        fused = 'stem.0.weight' in state_dict or any(
            re.match(r'^blocks\.\d+\.token_mixer\.weight$', k) for k in keys)
        return 'mmrepvit_deploy' if fused else 'mmrepvit'
    raise CheckpointFormatError(
        f'{source}: the keys match no RepViT checkpoint layout (recognised: {", ".join(LAYOUTS)}'
        f', optionally under "backbone."); its keys start with {dict(key_groups(state_dict))}, '
        f'e.g. {keys[:3]}')
