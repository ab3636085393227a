"""The contract every backbone here keeps: ``out_indices``, ``frozen_stages``, ``norm_eval``,
``with_cp``, a fused (deploy) form reached by ``switch_to_deploy``, and taking weights of either
form, in its own or a published layout, from any loader (mmengine's ``load_checkpoint`` with
``strict=False``, ``load_from``, the inferencers): a state-dict load pre-hook renames the keys
of a layout the backbone lists (``checkpoint_layouts``) and makes the backbone the form of the
weights first; weights that fit neither form are an error naming the keys and shapes.
"""
import contextlib
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ...checkpoint import load_backbone_checkpoint
from ...checkpoint.backbone_weights import BN_COUNTER, Shapes, shape_differences, shapes_of
from ...checkpoint.layouts import Layout, recognise, replace_under, under
from ...errors import CheckpointMismatchError


def fuse_in_place(module: nn.Module) -> None:
    """Replace every child that knows how to ``fuse()`` itself by its fused form."""
    for name, child in module.named_children():
        if callable(getattr(child, 'fuse', None)):
            setattr(module, name, child.fuse())
        else:
            fuse_in_place(child)


class MobileBackbone(BaseModule):
    """Multi-scale backbone with ``out_indices``, ``frozen_stages``, ``norm_eval``,
    ``with_cp`` and a fused (deploy) form.

    Subclasses set ``channels`` and build their modules inside ``with self.building(deploy):``,
    then call ``self.finish_building(deploy)``; they say which modules ``frozen_stages`` covers
    (``frozen_modules``) and which arguments rebuild the same structure
    (``structure_kwargs``).
    """
    num_stages = 4
    arch_zoo: Dict[str, dict] = {}
    custom_arch: str = ''  # how a custom arch is given, for the unknown-arch message
    checkpoint_layouts: Tuple[Layout, ...] = ()  # the published layouts this backbone reads

    @classmethod
    def named_arch(cls, name: str) -> Tuple[str, dict]:
        if name not in cls.arch_zoo:
            raise KeyError(f'Unknown {cls.__name__} arch {name!r}; valid: '
                           f'{", ".join(cls.arch_zoo)} (or {cls.custom_arch})')
        return name, dict(cls.arch_zoo[name])

    def __init__(self, out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 frozen_stages: int = -1, norm_eval: bool = False, with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg)
        stages = self.num_stages
        out_indices = tuple(out_indices) if isinstance(out_indices, (list, tuple)) \
            else (out_indices, )
        bad = [i for i in out_indices if not isinstance(i, int) or not 0 <= i < stages]
        if bad or not out_indices:
            strides = ', '.join(str(4 * 2**i) for i in range(stages))
            raise ValueError(f'out_indices={out_indices!r}: {bad or "empty"} not valid; each '
                             f'index must be a stage in 0-{stages - 1} (strides {strides})')
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= stages:
            raise ValueError(f'frozen_stages={frozen_stages!r} is out of range; valid: -1 '
                             f'(nothing), 0 (stem) ... {stages} (stem and all {stages} stages)')
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.deploy = False
        self._form_shapes: Dict[bool, Shapes] = {}
        self._register_load_state_dict_pre_hook(MobileBackbone._adopt_weights_form,
                                                with_module=True)

    # -- subclass interface -------------------------------------------------------------------
    def frozen_modules(self) -> Iterable[nn.Module]:
        raise NotImplementedError

    def structure_kwargs(self) -> dict:
        """Constructor arguments that rebuild this module tree (architecture, norm)."""
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__

    def fitting_hint(self, given: Shapes) -> str:
        """A sentence on what the weights do fit (e.g. another variant), or ''."""
        return ''

    # -- building -----------------------------------------------------------------------------
    @staticmethod
    def building(deploy: bool):
        """The plain modules of a deploy=True backbone are only a recipe for the fused ones:
        build them on the meta device (no memory, no initialisation)."""
        return torch.device('meta') if deploy else contextlib.nullcontext()

    def finish_building(self, deploy: bool) -> None:
        self.out_channels = [self.channels[i] for i in self.out_indices]
        self.out_strides = [4 * 2**i for i in self.out_indices]
        if deploy:
            fuse_in_place(self)  # shapes only, on the meta device
            if torch.empty(0).device.type == 'meta':
                self.deploy = True  # a shape-only twin (``form_shapes``)
                return
            self.to_empty(device='cpu')
            for module in self.modules():  # fresh weights, as an unloaded model would have
                for tensor in module.parameters(recurse=False):
                    nn.init.zeros_(tensor)
                if callable(getattr(module, 'reset_parameters', None)):
                    module.reset_parameters()
            self.deploy = True
        self._freeze_stages()

    def twin(self, deploy: bool, device='cpu'):
        """A new backbone of this structure in the given form (weights not copied)."""
        with torch.device('meta') if str(device) == 'meta' else contextlib.nullcontext():
            return type(self)(**self.structure_kwargs(), deploy=deploy)

    # -- running ------------------------------------------------------------------------------
    def run_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One block, through gradient checkpointing when ``with_cp`` saves memory."""
        if self.with_cp and self.training and x.requires_grad:
            return cp.checkpoint(block, x, use_reentrant=False)
        return block(x)

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        for module in self.frozen_modules():
            module.eval()
            for p in module.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> 'MobileBackbone':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fuse every fusable block in place (running statistics). Idempotent."""
        if self.deploy:
            return
        fuse_in_place(self)
        self.deploy = True
        self._freeze_stages()

    # -- taking weights -----------------------------------------------------------------------
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
