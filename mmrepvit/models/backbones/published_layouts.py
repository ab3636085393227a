"""Key mapping from the published RepViT checkpoint layouts to this project's backbone.

Our backbone: ``stem.{0,2}`` (ConvBN), ``blocks.{i}`` = row i+1 of the original's ``features``.
Each converter drops the classifier head and passes keys it does not know through unchanged,
so that the loader reports them as unexpected instead of losing them silently. Kept beside the
backbone because its load hook converts these layouts in any loader (``RepViT.to_own_layout``).
"""
import re
from collections import defaultdict

from ...errors import CheckpointFormatError

# ImageNet classifier heads, per layout: not part of a backbone.
HEAD_PREFIXES = {
    'official': ('classifier.', ),
    'official_legacy': ('classifier.', ),
    'timm': ('head.', ),
}

# Applied in order to every key of an original-release checkpoint (current and legacy form)
# once `features.N` has become `blocks.{N-1}` (N >= 1) or `stem` (N == 0).
OFFICIAL_RULES = (
    (r'^stem\.(\d)\.c\.', r'stem.\1.conv.'),
    (r'\.token_mixer\.0\.conv\.c\.', '.token_mixer.dw3x3.conv.'),
    (r'\.token_mixer\.0\.conv\.bn\.', '.token_mixer.dw3x3.bn.'),
    (r'\.token_mixer\.0\.conv1\.c\.', '.token_mixer.dw1x1.conv.'),  # legacy
    (r'\.token_mixer\.0\.conv1\.bn\.', '.token_mixer.dw1x1.bn.'),  # legacy
    (r'\.token_mixer\.0\.conv1\.', '.token_mixer.dw1x1.'),
    (r'\.token_mixer\.0\.bn\.', '.token_mixer.bn.'),  # RepDWConv's outer norm, or stride-2 dw
    (r'\.token_mixer\.0\.c\.', '.token_mixer.conv.'),  # stride-2 depthwise conv
    (r'\.token_mixer\.1\.', '.se.'),
    (r'\.token_mixer\.2\.c\.', '.proj.conv.'),
    (r'\.token_mixer\.2\.bn\.', '.proj.bn.'),
    (r'\.channel_mixer\.m\.0\.c\.', '.channel_mixer.fc1.conv.'),
    (r'\.channel_mixer\.m\.0\.bn\.', '.channel_mixer.fc1.bn.'),
    (r'\.channel_mixer\.m\.2\.c\.', '.channel_mixer.fc2.conv.'),
    (r'\.channel_mixer\.m\.2\.bn\.', '.channel_mixer.fc2.bn.'),
)

# timm: inside a stride-1 block (``stages.S.blocks.B`` and ``stages.S.downsample.pre_block``).
TIMM_BLOCK_RULES = (
    (r'^token_mixer\.conv\.c\.', 'token_mixer.dw3x3.conv.'),
    (r'^token_mixer\.conv\.bn\.', 'token_mixer.dw3x3.bn.'),
    (r'^token_mixer\.conv1\.c\.', 'token_mixer.dw1x1.conv.'),  # legacy
    (r'^token_mixer\.conv1\.bn\.', 'token_mixer.dw1x1.bn.'),  # legacy
    (r'^token_mixer\.conv1\.', 'token_mixer.dw1x1.'),
    (r'^channel_mixer\.conv1\.c\.', 'channel_mixer.fc1.conv.'),
    (r'^channel_mixer\.conv1\.bn\.', 'channel_mixer.fc1.bn.'),
    (r'^channel_mixer\.conv2\.c\.', 'channel_mixer.fc2.conv.'),
    (r'^channel_mixer\.conv2\.bn\.', 'channel_mixer.fc2.bn.'),
)
# timm: the stride-2 row, split into three parts of ``stages.S.downsample``.
TIMM_DOWNSAMPLE_RULES = (
    (r'^spatial_downsample\.c\.', 'token_mixer.conv.'),
    (r'^spatial_downsample\.bn\.', 'token_mixer.bn.'),
    (r'^channel_downsample\.c\.', 'proj.conv.'),
    (r'^channel_downsample\.bn\.', 'proj.bn.'),
    (r'^ffn\.conv1\.c\.', 'channel_mixer.fc1.conv.'),
    (r'^ffn\.conv1\.bn\.', 'channel_mixer.fc1.bn.'),
    (r'^ffn\.conv2\.c\.', 'channel_mixer.fc2.conv.'),
    (r'^ffn\.conv2\.bn\.', 'channel_mixer.fc2.bn.'),
)
TIMM_STEM_RULES = (
    (r'^stem\.conv1\.c\.', 'stem.0.conv.'),
    (r'^stem\.conv1\.bn\.', 'stem.0.bn.'),
    (r'^stem\.conv2\.c\.', 'stem.2.conv.'),
    (r'^stem\.conv2\.bn\.', 'stem.2.bn.'),
)
TIMM_STAGE_KEY = re.compile(
    r'^stages\.(?P<stage>\d+)\.(?:blocks\.(?P<block>\d+)|downsample\.(?P<pre>pre_block)'
    r'|downsample)\.(?P<rest>.*)$')


def published_layout(keys):
    """'official', 'official_legacy' or 'timm' for backbone keys in a published layout, else
    None."""
    keys = list(keys)
    if any(k.startswith('features.') for k in keys):
        legacy = any(re.search(r'\.token_mixer\.0\.conv1\.c\.weight$', k) for k in keys)
        return 'official_legacy' if legacy else 'official'
    if any(k.startswith(('stages.', 'stem.conv1.')) for k in keys):
        return 'timm'
    return None


def convert_published(state_dict, layout):
    """A backbone state_dict in a published ``layout`` -> ours (the classifier head dropped)."""
    if layout in ('official', 'official_legacy'):
        return convert_official(state_dict)
    if layout == 'timm':  # rows from the checkpoint's own structure, so a wrong variant
        return convert_timm(state_dict, timm_depths(state_dict))  # is named, not garbled
    raise ValueError(f'layout={layout!r}: not a published RepViT layout; valid: official, '
                     f'official_legacy, timm')


def _apply(rules, key):
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def split_head(state_dict, layout):
    """``(backbone keys, head keys)`` of a state_dict in ``layout``."""
    prefixes = HEAD_PREFIXES.get(layout, ())
    head = {k: v for k, v in state_dict.items() if k.startswith(prefixes)} if prefixes else {}
    return {k: v for k, v in state_dict.items() if k not in head}, head


def _rename_feature_index(key):
    m = re.match(r'^features\.(\d+)\.(.*)$', key)
    if m is None:
        return key
    row, rest = int(m.group(1)), m.group(2)
    return f'stem.{rest}' if row == 0 else f'blocks.{row - 1}.{rest}'


def convert_official(state_dict):
    """Original-release keys (``features.*``, current and legacy form) -> ours; the classifier
    head is dropped."""
    out = {}
    for key, value in split_head(state_dict, 'official')[0].items():
        new = _rename_feature_index(key)
        if new != key:
            new = _apply(OFFICIAL_RULES, new)
        out[new] = value
    return out


def timm_depths(state_dict):
    """Rows per stage of the original layout, read off a timm state_dict's structure.

    timm moves the last row of stages 0-2 into the next stage as ``downsample.pre_block``, so
    stage s has ``blocks`` + its stride-2 row (s > 0) + the pre_block held by stage s + 1.
    """
    blocks = defaultdict(lambda: -1)
    downsample, pre_block, stages = set(), set(), set()
    for key in state_dict:
        m = TIMM_STAGE_KEY.match(key)
        if m is None:
            continue
        stage = int(m['stage'])
        stages.add(stage)
        if m['block'] is not None:
            blocks[stage] = max(blocks[stage], int(m['block']))
        elif m['pre']:
            pre_block.add(stage)
        else:
            downsample.add(stage)
    if stages != {0, 1, 2, 3}:
        raise CheckpointFormatError(f'A timm RepViT state_dict has stages 0-3; this one has '
                                    f'stages {sorted(stages)}')
    return tuple(blocks[s] + 1 + (s in downsample) + (s + 1 in pre_block) for s in range(4))


def convert_timm(state_dict, depths):
    """timm keys (``stem.conv1``, ``stages.S.{downsample,blocks}``) -> ours; the head is dropped.

    ``depths``: rows per stage in the original layout (``RepViT.depths``, or
    :func:`timm_depths`); row indices follow from them, for any variant.
    """
    if len(depths) != 4:
        raise ValueError(f'depths must give the rows of 4 stages, got {depths!r}')
    starts = [sum(depths[:s]) for s in range(4)]  # index in `blocks` of each stage's first row
    out = {}
    for key, value in split_head(state_dict, 'timm')[0].items():
        m = TIMM_STAGE_KEY.match(key)
        if key.startswith('stem.'):
            new = _apply(TIMM_STEM_RULES, key)
        elif m is None:
            new = key
        else:
            stage, rest = int(m['stage']), m['rest']
            if m['block'] is not None:  # after the stride-2 row, except in stage 0
                row = starts[stage] + int(m['block']) + (1 if stage > 0 else 0)
                new = f'blocks.{row}.{_apply(TIMM_BLOCK_RULES, rest)}'
            elif m['pre']:  # the previous stage's last row
                new = f'blocks.{starts[stage] - 1}.{_apply(TIMM_BLOCK_RULES, rest)}'
            else:  # the stride-2 row opening this stage
                new = f'blocks.{starts[stage]}.{_apply(TIMM_DOWNSAMPLE_RULES, rest)}'
        if new in out:
            raise CheckpointFormatError(
                f'timm key {key!r} maps to {new!r} twice with depths {tuple(depths)}: the '
                f'state_dict does not have this structure')
        out[new] = value
    return out
