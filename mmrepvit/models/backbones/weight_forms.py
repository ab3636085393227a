"""How a backbone takes weights: in either of its two forms (plain, fused), in its own or a
published layout, from any loader (mmengine's ``load_checkpoint`` with ``strict=False``,
``load_from``, the inferencers): a state-dict load pre-hook renames the keys of a layout the
backbone lists (``checkpoint_layouts``) and makes the backbone the form of the weights first;
weights that fit neither form are an error naming the keys and shapes.
"""
import contextlib
from typing import Dict, Optional, Tuple

import torch
from mmengine.logging import print_log

from ...checkpoint import load_backbone_checkpoint
from ...checkpoint.backbone_weights import BN_COUNTER, Shapes, shape_differences, shapes_of
from ...checkpoint.layouts import Layout, recognise, replace_under, under
from ...errors import CheckpointMismatchError


class WeightForms:
    """Mixin of ``MobileBackbone``: loading either form's weights, in its own or a published
    layout. Needs ``structure_kwargs()``, ``describe()``, ``switch_to_deploy()`` and
    ``deploy``."""
    checkpoint_layouts: Tuple[Layout, ...] = ()  # the published layouts this backbone reads

    def __init__(self, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self._form_shapes: Dict[bool, Shapes] = {}
        self._register_load_state_dict_pre_hook(WeightForms._adopt_weights_form,
                                                with_module=True)

    def fitting_hint(self, given: Shapes) -> str:
        """A sentence on what the weights do fit (e.g. another variant), or ''."""
        return ''

    def twin(self, deploy: bool, device='cpu'):
        """A new backbone of this structure in the given form (weights not copied)."""
        with torch.device('meta') if str(device) == 'meta' else contextlib.nullcontext():
            return type(self)(**self.structure_kwargs(), deploy=deploy)

    def form_shapes(self, deploy: bool) -> Shapes:
        """key -> shape of this structure's plain (``False``) or fused (``True``) form."""
        if deploy == self.deploy:
            return shapes_of(self.state_dict())
        if deploy not in self._form_shapes:
            self._form_shapes[deploy] = shapes_of(self.twin(deploy, 'meta').state_dict())
        return self._form_shapes[deploy]

    def to_own_layout(self, weights: dict) -> dict:
        """``weights`` (keys relative to this backbone) renamed to its own when they are in one
        of its ``checkpoint_layouts`` (the classifier head dropped); else ``weights`` itself."""
        layout = recognise(self.checkpoint_layouts, weights)
        if layout is None:
            return weights
        converted = layout.rename(weights)
        dropped = len(weights) - len(converted)
        print_log(f'{self.describe()}: renamed {len(converted)} keys of the {layout.name} '
                  f'layout to this backbone\'s' + (f', dropped {dropped} classifier head keys'
                                                   if dropped else ''), logger='current')
        return converted

    def weights_mismatch(self, given: Shapes,
                         source: str = 'the state_dict') -> Optional[CheckpointMismatchError]:
        """None if ``given`` fits the plain or the fused form, else the error to raise."""
        forms = {deploy: self.form_shapes(deploy) for deploy in (False, True)}
        if given in forms.values():
            return None
        closer = min(forms, key=lambda d: len(set(given) ^ set(forms[d])))
        lines = [f'{source} does not fit this {self.describe()} in its plain or its fused '
                 f'form; nothing was loaded.', self.fitting_hint(given),
                 f'Compared with the {"fused" if closer else "plain"} form:']
        lines += shape_differences(given, forms[closer])
        return CheckpointMismatchError('\n'.join(line for line in lines if line))

    @torch.no_grad()
    def _adopt_weights_form(self, state_dict, prefix, *args):
        """Load pre-hook: make the weights under ``prefix`` and this backbone the same form."""
        own = under(state_dict, prefix)
        if not own:
            return  # nothing for the backbone here: the loader reports the missing keys
        native = self.to_own_layout(own)
        if native is not own:  # e.g. a whole-model checkpoint of the original release
            replace_under(state_dict, prefix, own, native)
            own = native
        given = shapes_of(own)
        if given != self.form_shapes(self.deploy):
            if given != self.form_shapes(not self.deploy):
                raise self.weights_mismatch(given)
            if self.deploy:  # plain weights for a fused backbone: fuse them first
                plain = self.twin(deploy=False)
                plain.load_state_dict(own, strict=False)  # counters may be absent
                plain.eval().switch_to_deploy()
                replace_under(state_dict, prefix, own, plain.state_dict())
                own = plain.state_dict()
                print_log(f'{self.describe()}: fused the plain weights being loaded into this '
                          f'fused (deploy) backbone', logger='current')
            else:
                self.switch_to_deploy()
                self._record_new_params()
                print_log(f'{self.describe()}: the weights being loaded are fused (deploy '
                          f'form); switched this backbone to its fused form first. It has no '
                          f'BatchNorm left: fine-tune from plain weights instead.',
                          logger='current')
        filled = {k: v for k, v in self.state_dict().items()
                  if k.endswith(BN_COUNTER) and k not in own}
        if filled:  # counters carry no weights; published checkpoints may omit them
            state_dict.update({prefix + k: v for k, v in filled.items()})
            print_log(f'{self.describe()}: the weights have no BN num_batches_tracked '
                      f'counters; kept the backbone\'s for {len(filled)} norms',
                      logger='current')

    def _record_new_params(self) -> None:
        """Tell mmengine's init bookkeeping (shared by a model's modules while its
        ``init_weights`` runs) about the fused parameters, which it would take for a bug."""
        info = getattr(self, '_params_init_info', None)
        if info is None:
            return
        for module in self.modules():  # mmengine removes it from each module afterwards
            module._params_init_info = info
        for param in self.parameters():
            if param not in info:
                info[param]['init_info'] = (f'Loaded by {type(self).__name__} in its fused '
                                            f'form')
                info[param]['tmp_mean_value'] = param.data.mean().cpu()

    def init_weights(self) -> None:
        """``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` reads any layout
        this backbone reads, strictly (``load_backbone_checkpoint``); other initialisers (a
        list may mix both) stay mmengine's. ``map_location`` is accepted and unused: weights
        are read on the CPU and copied into the module wherever it is."""
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg]
        pretrained = [c for c in cfgs if c and c.get('type') == 'Pretrained']
        if not pretrained:
            return super().init_weights()
        others = [c for c in cfgs if c and c.get('type') != 'Pretrained']
        if others:
            self.init_cfg = others
            super().init_weights()
        kwargs = {k: v for k, v in pretrained[-1].items() if k not in ('type', 'map_location')}
        load_backbone_checkpoint(self, kwargs.pop('checkpoint'), **kwargs)
        self._is_init = True
