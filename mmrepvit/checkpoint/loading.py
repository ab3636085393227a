"""Loading a backbone checkpoint in any known layout into a backbone, all or nothing.

Layouts: the original RepViT release (current and legacy), timm's, ours (plain or fused), each
bare, under ``model`` / ``state_dict``, or under ``backbone.`` in a detector/segmentor
checkpoint. Classifier heads are dropped (and logged); every backbone key must then be present
with the right shape and nothing may be left over, or nothing is loaded. Which form (plain or
fused) the backbone takes is the backbone's own business (``MobileBackbone``'s load hook).
"""
from dataclasses import dataclass, field
from typing import Optional

import torch.nn as nn
from mmengine.logging import print_log

from ..models.backbones.base import shapes_of
from ..models.backbones.published_layouts import convert_published, split_head
from ..models.backbones.repvit import RepViT
from ..registry import WEIGHT_INITIALIZERS
from .detection import detect_layout, find_state_dict, select_backbone
from .safe_load import load_checkpoint_file


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
        return self.layout == 'mmrepvit_deploy'


def extract_backbone_weights(checkpoint: dict, prefix: Optional[str] = None,
                             source: str = 'checkpoint',
                             published_layouts: bool = True) -> BackboneWeights:
    """A loaded checkpoint -> :class:`BackboneWeights` in our layout. ``published_layouts``:
    recognise and convert RepViT's published layouts (else the keys are taken as ours)."""
    state_dict, container = find_state_dict(checkpoint, source)
    state_dict, used_prefix, ignored = select_backbone(state_dict, prefix, source)
    if not published_layouts:
        return BackboneWeights(state_dict, 'mmrepvit', source, container, used_prefix, [],
                               ignored)
    layout = detect_layout(state_dict, source)
    state_dict, head = split_head(state_dict, layout)
    if layout in ('official', 'official_legacy', 'timm'):
        state_dict = convert_published(state_dict, layout)
    return BackboneWeights(state_dict, layout, source, container, used_prefix, sorted(head),
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
    _log_load(model.describe(), weights, logger)
    return weights


def _log_load(name: str, weights: BackboneWeights, logger: str) -> None:
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


def load_backbone_checkpoint(model: nn.Module, path: str, prefix: Optional[str] = None,
                             logger: str = 'current') -> BackboneWeights:
    """What ``init_cfg=dict(type='Pretrained', checkpoint=path, prefix=...)`` does: read
    ``path`` with ``weights_only=True``, recognise and convert its layout, load it strictly."""
    checkpoint = load_checkpoint_file(path)
    weights = extract_backbone_weights(checkpoint, prefix, source=f'checkpoint {str(path)!r}',
                                       published_layouts=isinstance(model, RepViT))
    return load_backbone_weights(model, weights, logger)


@WEIGHT_INITIALIZERS.register_module()
class PretrainedBackbone:
    """The initialiser a backbone's ``init_cfg=dict(type='Pretrained', ...)`` becomes."""

    def __init__(self, checkpoint: str, prefix: Optional[str] = None,
                 map_location: str = 'cpu'):
        # map_location: accepted as mmengine's Pretrained does; weights are read on the CPU
        # and copied into the module wherever it is
        self.checkpoint, self.prefix = checkpoint, prefix

    def __call__(self, module: nn.Module) -> None:
        load_backbone_checkpoint(module, self.checkpoint, prefix=self.prefix)
