"""Loading a RepViT checkpoint in any known layout into a RepViT backbone, all or nothing.

Layouts: the original release (current and legacy), timm's, ours (unfused or fused), each
bare, under ``model`` / ``state_dict``, or under ``backbone.`` in a detector/segmentor
checkpoint. Classifier heads are dropped (and logged); every backbone key must then be present
with the right shape and nothing may be left over, or nothing is loaded.
"""
from dataclasses import dataclass, field

from mmengine.logging import print_log

from ..models.backbones.repvit import ARCH_ZOO
from .arch_match import BN_COUNTER, build_unfused_twin, fitting_variants, shapes_of
from .detection import detect_layout, find_state_dict, select_backbone
from .errors import CheckpointMismatchError
from .layouts import convert_official, convert_timm, split_head, timm_depths
from .safe_load import load_checkpoint_file

MAX_LISTED = 8  # keys named per kind of problem in an error message


@dataclass
class BackboneWeights:
    """Backbone weights in our layout, and what was done to get them."""
    state_dict: dict
    layout: str
    source: str = 'checkpoint'
    container: str = ''
    prefix: str = ''
    dropped_head: list = field(default_factory=list)
    ignored_groups: dict = field(default_factory=dict)

    @property
    def deploy(self):
        return self.layout == 'mmrepvit_deploy'


def extract_backbone_weights(checkpoint, prefix=None, source='checkpoint'):
    """A loaded checkpoint (any layout) -> :class:`BackboneWeights` in our layout."""
    state_dict, container = find_state_dict(checkpoint, source)
    state_dict, used_prefix, ignored = select_backbone(state_dict, prefix, source)
    layout = detect_layout(state_dict, source)
    state_dict, head = split_head(state_dict, layout)
    if layout in ('official', 'official_legacy'):
        state_dict = convert_official(state_dict)
    elif layout == 'timm':  # rows from the checkpoint's own structure, so a wrong variant
        state_dict = convert_timm(state_dict, timm_depths(state_dict))  # is named, not garbled
    return BackboneWeights(state_dict, layout, source, container, used_prefix, sorted(head),
                           ignored)


def _listing(items):
    shown = '; '.join(items[:MAX_LISTED])
    return shown + (f'; ... ({len(items) - MAX_LISTED} more)' if len(items) > MAX_LISTED else '')


def _mismatch_error(model, weights, shapes, expected):
    missing = [f'{k} {list(expected[k])}' for k in expected if k not in shapes]
    unexpected = [f'{k} {list(shapes[k])}' for k in shapes if k not in expected]
    wrong = [f'{k}: checkpoint {list(shapes[k])}, backbone {list(expected[k])}'
             for k in shapes if k in expected and shapes[k] != expected[k]]
    if not (missing or unexpected or wrong):
        return None
    arch = model.arch_name if model.arch_name != 'custom' else \
        f'custom (channels={model.channels}, depths={model.depths})'
    lines = [f'{weights.source} ({weights.layout} layout) does not fit this RepViT '
             f'(arch {arch!r}{", deploy=True" if model.deploy else ""}); nothing was loaded.']
    fits = fitting_variants(shapes, weights.deploy)
    if fits:
        lines.append(f'It fits arch {" or ".join(map(repr, fits))}: build the backbone with '
                     f'arch={fits[0]!r} (and the neck with its channels).')
    else:
        lines.append(f'It fits none of the published variants exactly ({", ".join(ARCH_ZOO)}).')
    for what, items in (('missing from the checkpoint', missing),
                        ('unexpected (not in the backbone)', unexpected),
                        ('of the wrong shape', wrong)):
        if items:
            lines.append(f'  {len(items)} keys {what}: {_listing(items)}')
    return CheckpointMismatchError('\n'.join(lines))


def load_backbone_weights(model, weights, logger='current'):
    """Load :class:`BackboneWeights` into ``model`` (strictly), fusing them first when
    ``model`` is deployed and they are not. Returns ``weights``."""
    if weights.deploy and not model.deploy:
        raise CheckpointMismatchError(
            f'{weights.source} holds fused (deploy) RepViT weights; build the backbone with '
            f'deploy=True to load them (or use the unfused checkpoint)')
    fuse_on_load = model.deploy and not weights.deploy
    target = build_unfused_twin(model) if fuse_on_load else model
    reference = target.state_dict()
    state_dict = dict(weights.state_dict)
    filled = [k for k in reference if k.endswith(BN_COUNTER) and k not in state_dict]
    state_dict.update({k: reference[k] for k in filled})
    error = _mismatch_error(model, weights, shapes_of(state_dict), shapes_of(reference))
    if error is not None:
        raise error
    target.load_state_dict(state_dict, strict=True)
    if fuse_on_load:
        target.eval().switch_to_deploy()
        model.load_state_dict(target.state_dict(), strict=True)
    _log_load(weights, len(state_dict), filled, fuse_on_load, logger)
    return weights


def _log_load(weights, num_keys, filled, fused, logger):
    where = ''.join([f" under '{weights.container}'" if weights.container else '',
                     f" with prefix '{weights.prefix}'" if weights.prefix else ''])
    print_log(f'RepViT: loaded {num_keys} backbone keys from {weights.source}: recognised the '
              f'{weights.layout} layout{where}', logger=logger)
    if weights.dropped_head:
        print_log(f'RepViT: dropped {len(weights.dropped_head)} classifier head keys: '
                  f'{", ".join(weights.dropped_head)}', logger=logger)
    if weights.ignored_groups:
        print_log(f'RepViT: ignored keys outside the backbone: {weights.ignored_groups}',
                  logger=logger)
    if filled:
        print_log(f'RepViT: the checkpoint has no BN num_batches_tracked counters; kept the '
                  f'backbone\'s for {len(filled)} norms', logger=logger)
    if fused:
        print_log('RepViT: fused the unfused checkpoint for this deploy=True backbone',
                  logger=logger)


def load_backbone_checkpoint(model, path, prefix=None, logger='current'):
    """What ``init_cfg=dict(type='Pretrained', checkpoint=path, prefix=...)`` does: read
    ``path`` with ``weights_only=True``, recognise and convert its layout, load it strictly."""
    checkpoint = load_checkpoint_file(path)
    weights = extract_backbone_weights(checkpoint, prefix, source=f'checkpoint {str(path)!r}')
    return load_backbone_weights(model, weights, logger)
