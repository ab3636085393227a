"""The contract every backbone here keeps: ``out_indices``, ``frozen_stages``, ``norm_eval``,
``with_cp`` and a fused (deploy) form reached by ``switch_to_deploy``. How a backbone takes
weights of either form and of published layouts: ``weight_forms``.
"""
import contextlib
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from .weight_forms import WeightForms


def fuse_in_place(module: nn.Module) -> None:
    """Replace every child that knows how to ``fuse()`` itself by its fused form."""
    for name, child in module.named_children():
        if callable(getattr(child, 'fuse', None)):
            setattr(module, name, child.fuse())
        else:
            fuse_in_place(child)


class MobileBackbone(WeightForms, BaseModule):
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

    # -- subclass interface -------------------------------------------------------------------
    def frozen_modules(self) -> Iterable[nn.Module]:
        raise NotImplementedError

    def structure_kwargs(self) -> dict:
        """Constructor arguments that rebuild this module tree (architecture, norm)."""
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__

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
