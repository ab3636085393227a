"""Checkpoint layouts: where a checkpoint keeps its weights, which published layout they are
in (a :class:`Layout`, listed in a backbone's ``checkpoint_layouts``; an mmdet 2 / mmseg 0
model holds it under ``backbone.``), and their renaming to the backbone's own keys (RepViT:
``stem.{0,2}``, ``blocks.{i}`` = row i+1 of the original's ``features``). Keys a renaming does
not know pass through unchanged, so that the loader reports them instead of losing them.
"""
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import torch

from ..errors import CheckpointFormatError

# Where checkpoints keep their weights: mmengine's ``state_dict``, the original's ``model``.
CONTAINER_KEYS = ('state_dict', 'model')
DDP_PREFIX = 'module.'  # what a DDP-wrapped model's state_dict puts before every key
MODEL_BACKBONE_PREFIX = 'backbone.'  # where mmdet / mmseg models hold the backbone
# This project's own layout, plain and fused (``deploy=True``): a fused one has no BatchNorm.
OWN_LAYOUTS = ('mmrepvit', 'mmrepvit_deploy')


@dataclass(frozen=True)
class Layout:
    """A published layout: whether keys are in it, its classifier head (not part of a
    backbone) and its renaming."""
    name: str
    matches: Callable[[Sequence[str]], bool]
    head: Tuple[str, ...]
    rename: Callable[[dict], dict]  # to the backbone's keys, the classifier head dropped


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
    ``model`` (container is then that key, else ``''``), without a DDP ``module.`` prefix."""
    if isinstance(checkpoint, Mapping):
        for key in CONTAINER_KEYS + ('', ):
            found = checkpoint.get(key) if key else checkpoint
            if _is_state_dict(found):
                ddp = all(k.startswith(DDP_PREFIX) for k in found)
                return under(found, DDP_PREFIX if ddp else ''), key
    raise CheckpointFormatError(
        f'{source} holds no weights: it is {_describe(checkpoint)}. Expected a state_dict '
        f'(names -> tensors) at the top level or under one of {CONTAINER_KEYS}')


def key_groups(keys):
    """Counts of the first name component of each key, e.g. ``{'backbone.': 210, ...}``."""
    return Counter(k.split('.', 1)[0] + '.' for k in keys)


def under(state_dict, prefix):
    """The entries with keys under ``prefix``, the prefix removed."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def replace_under(state_dict, prefix, old, new):
    """In place: the entries ``old`` under ``prefix`` replaced by ``new``."""
    for key in old:
        del state_dict[prefix + key]
    state_dict.update({prefix + k: v for k, v in new.items()})


def select_backbone(state_dict, prefix=None, source='checkpoint'):
    """``(weights, prefix used, ignored key groups)``: the keys under ``prefix`` (an error if
    there are none), else, in a detector / segmentor checkpoint, those under ``backbone.``."""
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
    elif any(k.startswith(MODEL_BACKBONE_PREFIX) for k in state_dict):
        prefix = MODEL_BACKBONE_PREFIX
    else:
        return state_dict, '', {}
    selected = under(state_dict, prefix)
    if not selected:
        raise CheckpointFormatError(f'{source}: no key starts with prefix={prefix!r}; its keys '
                                    f'start with {dict(key_groups(state_dict))}')
    return selected, prefix, dict(key_groups(k for k in state_dict if not k.startswith(prefix)))


def recognise(layouts: Sequence[Layout], keys) -> Optional[Layout]:
    """The one of ``layouts`` the keys are in, or None."""
    keys = list(keys)
    return next((layout for layout in layouts if layout.matches(keys)), None)


def without_head(state_dict, head):
    """``state_dict`` without the keys starting with one of ``head``."""
    return {k: v for k, v in state_dict.items() if not k.startswith(head)}


def _rename(key, rules):
    """``key`` with each (old, new) of ``rules`` replaced in turn, then every ConvBN's conv
    (``.c.`` in both published layouts) named as ours (``.conv.``)."""
    for old, new in rules + (('.c.', '.conv.'), ):
        key = key.replace(old, new)
    return key


# ---- RepViT's original release (``features.N``, current and legacy blocks) -------------------
# Inside a row, once `features.N` has become `blocks.{N-1}` (N >= 1) or `stem` (N == 0).
# token_mixer.0 is RepDWConv (conv: 3x3, conv1: 1x1, bn) or a stride-2 ConvBN.
OFFICIAL_RULES = (('.token_mixer.0.conv.', '.token_mixer.dw3x3.'),
                  ('.token_mixer.0.conv1.', '.token_mixer.dw1x1.'),
                  ('.token_mixer.0.', '.token_mixer.'), ('.token_mixer.1.', '.se.'),
                  ('.token_mixer.2.', '.proj.'), ('.channel_mixer.m.0.', '.channel_mixer.fc1.'),
                  ('.channel_mixer.m.2.', '.channel_mixer.fc2.'))
OFFICIAL_HEAD = ('classifier.', )
LEGACY_BLOCK_KEY = re.compile(r'\.token_mixer\.0\.conv1\.c\.weight$')


def convert_official(state_dict):
    """Original-release keys (``features.*``, current and legacy form) -> ours; the classifier
    head is dropped."""
    out = {}
    for key, value in without_head(state_dict, OFFICIAL_HEAD).items():
        m = re.match(r'^features\.(\d+)\.(.*)$', key)
        if m:
            row, rest = int(m[1]), m[2]
            key = _rename(f'blocks.{row - 1}.{rest}' if row else f'stem.{rest}', OFFICIAL_RULES)
        out[key] = value
    return out


def _official(legacy):
    return lambda keys: any(k.startswith('features.') for k in keys) and \
        legacy == any(LEGACY_BLOCK_KEY.search(k) for k in keys)


# ---- timm's RepViT (``stem.conv1``, ``stages.S.{downsample,blocks}``) --------------------------
# inside a stride-1 block (``stages.S.blocks.B`` and ``stages.S.downsample.pre_block``)
TIMM_BLOCK_RULES = (('token_mixer.conv.', 'token_mixer.dw3x3.'),
                    ('token_mixer.conv1.', 'token_mixer.dw1x1.'),
                    ('channel_mixer.conv1.', 'channel_mixer.fc1.'),
                    ('channel_mixer.conv2.', 'channel_mixer.fc2.'))
# the stride-2 row, split into three parts of ``stages.S.downsample``
TIMM_DOWNSAMPLE_RULES = (('spatial_downsample.', 'token_mixer.'), ('channel_downsample.', 'proj.'),
                         ('ffn.conv1.', 'channel_mixer.fc1.'), ('ffn.conv2.', 'channel_mixer.fc2.'))
TIMM_STEM_RULES = (('stem.conv1.', 'stem.0.'), ('stem.conv2.', 'stem.2.'))
TIMM_HEAD = ('head.', )
TIMM_STAGE_KEY = re.compile(
    r'^stages\.(?P<stage>\d+)\.(?:blocks\.(?P<block>\d+)|downsample\.(?P<pre>pre_block)'
    r'|downsample)\.(?P<rest>.*)$')


def timm_depths(state_dict):
    """Rows per stage of the original layout, read off a timm state_dict's structure.

    timm moves the last row of stages 0-2 into the next stage as ``downsample.pre_block``, so
    stage s has ``blocks`` + its stride-2 row (s > 0) + the pre_block held by stage s + 1.
    """
    blocks = defaultdict(lambda: -1)
    downsample, pre_block, stages = set(), set(), set()
    for m in filter(None, map(TIMM_STAGE_KEY.match, state_dict)):
        stage = int(m['stage'])
        stages.add(stage)
        if m['block'] is not None:
            blocks[stage] = max(blocks[stage], int(m['block']))
        else:
            (pre_block if m['pre'] else downsample).add(stage)
    if stages != {0, 1, 2, 3}:
        raise CheckpointFormatError(f'A timm RepViT state_dict has stages 0-3; this one has '
                                    f'stages {sorted(stages)}')
    return tuple(blocks[s] + 1 + (s in downsample) + (s + 1 in pre_block) for s in range(4))


def convert_timm(state_dict, depths):
    """timm keys -> ours; the head is dropped. ``depths``: rows per stage in the original
    layout (``RepViT.depths``, or :func:`timm_depths`); row indices follow from them."""
    if len(depths) != 4:
        raise ValueError(f'depths must give the rows of 4 stages, got {depths!r}')
    starts = [sum(depths[:s]) for s in range(4)]  # index in `blocks` of each stage's first row
    out = {}
    for key, value in without_head(state_dict, TIMM_HEAD).items():
        m = TIMM_STAGE_KEY.match(key)
        if key.startswith('stem.'):
            new = _rename(key, TIMM_STEM_RULES)
        elif m is None:
            new = key
        else:
            stage, rest = int(m['stage']), m['rest']
            if m['block'] is not None:  # after the stride-2 row, except in stage 0
                row = starts[stage] + int(m['block']) + (1 if stage > 0 else 0)
                new = f'blocks.{row}.{_rename(rest, TIMM_BLOCK_RULES)}'
            elif m['pre']:  # the previous stage's last row
                new = f'blocks.{starts[stage] - 1}.{_rename(rest, TIMM_BLOCK_RULES)}'
            else:  # the stride-2 row opening this stage
                new = f'blocks.{starts[stage]}.{_rename(rest, TIMM_DOWNSAMPLE_RULES)}'
        if new in out:
            raise CheckpointFormatError(
                f'timm key {key!r} maps to {new!r} twice with depths {tuple(depths)}: the '
                f'state_dict does not have this structure')
        out[new] = value
    return out


REPVIT_OFFICIAL = Layout('official', _official(legacy=False), OFFICIAL_HEAD, convert_official)
REPVIT_OFFICIAL_LEGACY = Layout('official_legacy', _official(legacy=True), OFFICIAL_HEAD,
                                convert_official)
# rows from the checkpoint's own structure, so that a wrong variant is named, not garbled
REPVIT_TIMM = Layout('timm', lambda keys: any(k.startswith(('stages.', 'stem.conv1.'))
                                              for k in keys),
                     TIMM_HEAD, lambda state_dict: convert_timm(state_dict,
                                                                timm_depths(state_dict)))
PUBLISHED = (REPVIT_OFFICIAL, REPVIT_OFFICIAL_LEGACY, REPVIT_TIMM)
