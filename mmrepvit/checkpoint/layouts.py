"""Key mapping from the published RepViT checkpoint layouts to this project's backbone."""
import re

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


def _rename_feature_index(key):
    m = re.match(r'^features\.(\d+)\.(.*)$', key)
    if m is None:
        return key
    row, rest = int(m.group(1)), m.group(2)
    return f'stem.{rest}' if row == 0 else f'blocks.{row - 1}.{rest}'


def convert_official(state_dict):
    """Original-release keys (``features.*``, ``classifier.*``) -> ours; heads are dropped."""
    out = {}
    for key, value in state_dict.items():
        if not key.startswith('features.'):
            continue
        new = _rename_feature_index(key)
        for pattern, repl in OFFICIAL_RULES:
            new = re.sub(pattern, repl, new)
        out[new] = value
    return out
