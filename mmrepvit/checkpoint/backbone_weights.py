"""Loading a backbone checkpoint, in any layout the backbone reads, into a backbone, all or
nothing: what ``init_cfg=dict(type='Pretrained', ...)`` of our backbones does. Classifier heads
are dropped (and logged); the form (plain or fused) is the backbone's own business (its load
hook).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log

from ..errors import CheckpointFormatError, first_few
from .layouts import OWN_LAYOUTS, PUBLISHED, find_state_dict, key_groups, recognise, select_backbone
from .safe_load import load_checkpoint_file

BN_COUNTER = 'num_batches_tracked'
MAX_LISTED = 8  # keys named per kind of problem in an error message
Shapes = Dict[str, Tuple[int, ...]]


def shapes_of(state_dict: dict) -> Shapes:
    """key -> shape, without BatchNorm's ``num_batches_tracked`` counters (which carry no
    weights and which some checkpoints omit)."""
    return {k: tuple(v.shape) for k, v in state_dict.items()
            if not k.endswith(BN_COUNTER) and isinstance(v, torch.Tensor)}


def _groups(keys: List[str]) -> str:
    groups = key_groups(keys)
    return '' if len(groups) < 2 else \
        ' (in ' + ', '.join(f'{g}* {n}' for g, n in groups.most_common()) + ')'


def shape_differences(given: Shapes, expected: Shapes, target: str = 'backbone') -> List[str]:
    """Lines naming the keys missing from ``given``, left over in it, or of the wrong shape;
    each with the top-level groups they fall in (``neck.*``, ``roi_head.*`` ...)."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [k for k in given if k in expected and given[k] != expected[k]]
    named = {
        'missing from the checkpoint': [f'{k} {list(expected[k])}' for k in missing],
        f'unexpected (not in the {target})': [f'{k} {list(given[k])}' for k in unexpected],
        'of the wrong shape': [f'{k}: checkpoint {list(given[k])}, {target} '
                               f'{list(expected[k])}' for k in wrong],
    }
    return [f'  {len(items)} keys {what}{_groups(keys)}: {first_few(items, MAX_LISTED, "; ")}'
            for (what, items), keys in zip(named.items(), (missing, unexpected, wrong))
            if items]


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
    def deploy(self) -> bool:
        return self.layout == OWN_LAYOUTS[1]


def extract_backbone_weights(checkpoint: dict, prefix: Optional[str] = None,
                             source: str = 'checkpoint',
                             backbone: Optional[nn.Module] = None) -> BackboneWeights:
    """A loaded checkpoint -> :class:`BackboneWeights` in our layout. ``backbone``: the one
    they are for; the published layouts it lists (``checkpoint_layouts``) are recognised, and
    keys in none of them must be its own. None: every published layout, no check."""
    state_dict, container = find_state_dict(checkpoint, source)
    state_dict, used_prefix, ignored = select_backbone(state_dict, prefix, source)
    layouts = PUBLISHED if backbone is None else backbone.checkpoint_layouts
    layout = recognise(layouts, state_dict)
    if layout is not None:
        head = sorted(k for k in state_dict if k.startswith(layout.head))
        return BackboneWeights(layout.rename(state_dict), layout.name, source, container,
                               used_prefix, head, ignored)
    own = {k.split('.', 1)[0] for k in backbone.state_dict()} if backbone is not None else ()
    if own and not any(k.split('.', 1)[0] in own for k in state_dict):
        names = ', '.join([layout.name for layout in layouts] + list(OWN_LAYOUTS))
        raise CheckpointFormatError(
            f'{source}: the keys match no {type(backbone).__name__} checkpoint layout '
            f'(recognised: {names}, optionally under "backbone."); its keys start with '
            f'{dict(key_groups(state_dict))}, e.g. {list(state_dict)[:3]}')
    fused = not any(k.endswith('.running_var') for k in state_dict)  # no norm left
    return BackboneWeights(state_dict, OWN_LAYOUTS[fused], source, container, used_prefix, [],
                           ignored)


def load_backbone_weights(model: nn.Module, weights: BackboneWeights,
                          logger: str = 'current') -> BackboneWeights:
    """Load :class:`BackboneWeights` into ``model`` strictly (the backbone fuses plain weights
    for its fused form, or switches to its fused form for fused weights). Returns
    ``weights``."""
    error = model.weights_mismatch(shapes_of(weights.state_dict),
                                   f'{weights.source} ({weights.layout} layout)')
    if error is not None:
        raise error
    model.load_state_dict(weights.state_dict, strict=True)
    name = model.describe()
    where = ''.join([f" under '{weights.container}'" if weights.container else '',
                     f" with prefix '{weights.prefix}'" if weights.prefix else ''])
    print_log(f'{name}: loaded {len(weights.state_dict)} backbone keys from {weights.source}: '
              f'recognised the {weights.layout} layout{where}', logger=logger)
    if weights.dropped_head:
        print_log(f'{name}: dropped {len(weights.dropped_head)} classifier head keys: '
                  f'{", ".join(weights.dropped_head)}', logger=logger)
    if weights.ignored_groups:
        print_log(f'{name}: ignored keys outside the backbone: {weights.ignored_groups}',
                  logger=logger)
    return weights


def load_backbone_checkpoint(model: nn.Module, path: str, prefix: Optional[str] = None,
                             logger: str = 'current') -> BackboneWeights:
    """What ``init_cfg=dict(type='Pretrained', checkpoint=path, prefix=...)`` does: read
    ``path`` with ``weights_only=True``, recognise and rename its layout, load it strictly."""
    weights = extract_backbone_weights(load_checkpoint_file(path), prefix,
                                       source=f'checkpoint {str(path)!r}', backbone=model)
    return load_backbone_weights(model, weights, logger)
