"""The contract every backbone here keeps, and the two forms of its weights.

A backbone is trained in its plain form (BatchNorm after every conv, multi-branch blocks) and
deployed in its fused form (``switch_to_deploy``). Checkpoints of either form circulate, and
users load them with whatever loader their toolbox uses (mmengine's ``load_checkpoint`` with
``strict=False``, a Runner's ``load_from``, ``init_detector``, the inferencers). So the
backbone itself recognises the form of the weights being loaded into it (a state-dict load
pre-hook) and becomes that form first; weights that fit neither form are an error naming the
keys and shapes, whichever loader is used.
"""
import contextlib
from collections import Counter
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ...errors import CheckpointMismatchError
from ...registry import WEIGHT_INITIALIZERS

BN_COUNTER = 'num_batches_tracked'
MAX_LISTED = 8  # keys named per kind of problem in an error message
Shapes = Dict[str, Tuple[int, ...]]


def fuse_in_place(module: nn.Module) -> None:
    """Replace every child that knows how to ``fuse()`` itself by its fused form."""
    for name, child in module.named_children():
        if callable(getattr(child, 'fuse', None)):
            setattr(module, name, child.fuse())
        else:
            fuse_in_place(child)


def shapes_of(state_dict: dict) -> Shapes:
    """key -> shape, without BatchNorm's ``num_batches_tracked`` counters (which carry no
    weights and which some checkpoints omit)."""
    return {k: tuple(v.shape) for k, v in state_dict.items()
            if not k.endswith(BN_COUNTER) and isinstance(v, torch.Tensor)}


def _listing(items: List[str]) -> str:
    shown = '; '.join(items[:MAX_LISTED])
    return shown + (f'; ... ({len(items) - MAX_LISTED} more)' if len(items) > MAX_LISTED else '')


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
    return [f'  {len(items)} keys {what}{_groups(keys)}: {_listing(items)}'
            for (what, items), keys in zip(named.items(), (missing, unexpected, wrong))
            if items]


def _groups(keys: List[str]) -> str:
    groups = Counter(k.split('.', 1)[0] for k in keys)
    return '' if len(groups) < 2 else \
        ' (in ' + ', '.join(f'{g}.* {n}' for g, n in groups.most_common()) + ')'


def validate_out_indices(out_indices: Union[int, Sequence[int]],
                         num_stages: int) -> Tuple[int, ...]:
    out_indices = tuple(out_indices) if isinstance(out_indices, (list, tuple)) \
        else (out_indices, )
    bad = [i for i in out_indices if not isinstance(i, int) or not 0 <= i < num_stages]
    if bad or not out_indices:
        strides = ', '.join(str(4 * 2**i) for i in range(num_stages))
        raise ValueError(f'out_indices={out_indices!r}: {bad or "empty"} not valid; each '
                         f'index must be a stage in 0-{num_stages - 1} (strides {strides})')
    return out_indices


def validate_frozen_stages(frozen_stages: int, num_stages: int) -> int:
    if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= num_stages:
        raise ValueError(f'frozen_stages={frozen_stages!r} is out of range; valid: -1 '
                         f'(nothing), 0 (stem) ... {num_stages} (stem and all {num_stages} '
                         f'stages)')
    return frozen_stages


class MobileBackbone(BaseModule):
    """Multi-scale backbone with ``out_indices``, ``frozen_stages``, ``norm_eval``,
    ``with_cp`` and a fused (deploy) form.

    Subclasses build their modules inside ``with self.building(deploy):``, then call
    ``self.finish_building(deploy)``; they say which modules ``frozen_stages`` covers
    (``frozen_modules``) and which arguments rebuild the same structure
    (``structure_kwargs``).
    """
    num_stages = 4
    arch_zoo: Dict[str, dict] = {}
    custom_arch: str = ''  # how a custom arch is given, for the unknown-arch message

    @classmethod
    def named_arch(cls, name: str) -> Tuple[str, dict]:
        if name not in cls.arch_zoo:
            raise KeyError(f'Unknown {cls.__name__} arch {name!r}; valid: '
                           f'{", ".join(cls.arch_zoo)} (or {cls.custom_arch})')
        return name, dict(cls.arch_zoo[name])

    def __init__(self, out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 frozen_stages: int = -1, norm_eval: bool = False, with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg=init_cfg)
        self.out_indices = validate_out_indices(out_indices, self.num_stages)
        self.frozen_stages = validate_frozen_stages(frozen_stages, self.num_stages)
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

    def fitting_hint(self, given: Shapes) -> str:
        """A sentence on what the weights do fit (e.g. another variant), or ''."""
        return ''

    def describe(self) -> str:
        return type(self).__name__

    def to_own_layout(self, weights: dict) -> dict:
        """``weights`` (keys relative to this backbone) with the keys of a published layout
        this backbone recognises renamed to its own; ``weights`` itself when there are none."""
        return weights

    # -- building -----------------------------------------------------------------------------
    @staticmethod
    def building(deploy: bool):
        """The plain modules of a deploy=True backbone are only a recipe for the fused ones:
        build them on the meta device (no memory, no initialisation)."""
        return torch.device('meta') if deploy else contextlib.nullcontext()

    def finish_building(self, deploy: bool) -> None:
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

    def twin(self, deploy: bool, device: Union[str, torch.device] = 'cpu') -> 'MobileBackbone':
        """A new backbone of this structure in the given form (weights not copied)."""
        with torch.device(device) if str(device) == 'meta' else contextlib.nullcontext():
            return type(self)(**self.structure_kwargs(), deploy=deploy)

    def form_shapes(self, deploy: bool) -> Shapes:
        """key -> shape of this structure's plain (``False``) or fused (``True``) form."""
        if deploy == self.deploy:
            return shapes_of(self.state_dict())
        if deploy not in self._form_shapes:
            self._form_shapes[deploy] = shapes_of(self.twin(deploy, 'meta').state_dict())
        return self._form_shapes[deploy]

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

    # -- loading ------------------------------------------------------------------------------
    def weights_mismatch(self, given: Shapes,
                         source: str = 'the state_dict') -> Optional[CheckpointMismatchError]:
        """None if ``given`` fits the plain or the fused form, else the error to raise."""
        if given in (self.form_shapes(self.deploy), self.form_shapes(not self.deploy)):
            return None
        forms = {deploy: self.form_shapes(deploy) for deploy in (False, True)}
        closer = min(forms, key=lambda d: len(set(given) ^ set(forms[d])))
        lines = [f'{source} does not fit this {self.describe()} in its plain or its fused '
                 f'form; nothing was loaded.']
        hint = self.fitting_hint(given)
        if hint:
            lines.append(hint)
        lines.append(f'Compared with the {"fused" if closer else "plain"} form:')
        lines += shape_differences(given, forms[closer])
        return CheckpointMismatchError('\n'.join(lines))

    @torch.no_grad()
    def _adopt_weights_form(self, state_dict, prefix, local_metadata, strict, missing_keys,
                            unexpected_keys, error_msgs):
        """Load pre-hook: make the weights under ``prefix`` and this backbone the same form."""
        own = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not own:
            return  # nothing for the backbone here: the loader reports the missing keys
        native = self.to_own_layout(own)
        if native is not own:  # e.g. a whole-model checkpoint of the original release
            for key in own:
                del state_dict[prefix + key]
            state_dict.update({prefix + k: v for k, v in native.items()})
            own = native
        given = shapes_of(own)
        if given != self.form_shapes(self.deploy):
            if given != self.form_shapes(not self.deploy):
                raise self.weights_mismatch(given)
            if self.deploy:  # plain weights for a fused backbone: fuse them first
                plain = self.twin(deploy=False)
                plain.load_state_dict(own, strict=False)  # counters may be absent
                plain.eval().switch_to_deploy()
                for key in own:
                    del state_dict[prefix + key]
                own = plain.state_dict()
                state_dict.update({prefix + k: v for k, v in own.items()})
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
        """``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` reads any known
        checkpoint layout of this backbone (``mmrepvit.checkpoint``), strictly; other
        initialisers (a list may mix both) stay mmengine's."""
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg]
        pretrained = [c for c in cfgs if c and c.get('type') == 'Pretrained']
        if not pretrained:
            return super().init_weights()
        others = [c for c in cfgs if c and c.get('type') != 'Pretrained']
        if others:
            self.init_cfg = others
            super().init_weights()
        kwargs = {k: v for k, v in pretrained[-1].items() if k != 'type'}
        WEIGHT_INITIALIZERS.get('PretrainedBackbone')(**kwargs)(self)
        self._is_init = True
