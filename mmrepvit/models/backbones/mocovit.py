"""MoCoViT (Ma et al., "MoCoViT: Mobile Convolutional Vision Transformer", arXiv 2205.12635) as
a multi-scale backbone for detection and segmentation.

No official code exists: GhostNet-1.0x with the last four stride-1 bottlenecks of the stride-32
stage replaced by Mobile Transformer Blocks, the reconstruction that matches the published size
(5.3M parameters, 147M multiply-adds); docs/mocovit.md lists every choice and its checks.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ...registry import MODELS
from ..layers import ConvBN, GhostBottleneck, MobileTransformerBlock, ghost_divisible
from .base import MobileBackbone

STEM_CHANNELS = 16
# GhostNet-1.0x's bottleneck rows, (kernel, hidden, out, SE, stride), at width 1.0. The stem
# row runs at stride 2 right after the 3x3 stem conv; STAGES end at strides 4, 8, 16, 32.
STEM_ROW = (3, 16, 16, False, 1)
STAGES = (
    ((3, 48, 24, False, 2), (3, 72, 24, False, 1)),
    ((5, 72, 40, True, 2), (5, 120, 40, True, 1)),
    ((3, 240, 80, False, 2), (3, 200, 80, False, 1), (3, 184, 80, False, 1),
     (3, 184, 80, False, 1), (3, 480, 112, True, 1), (3, 672, 112, True, 1)),
    ((5, 672, 160, True, 2), (5, 960, 160, False, 1), (5, 960, 160, True, 1),
     (5, 960, 160, False, 1), (5, 960, 160, True, 1)),
)
# Rows at the end of the last stage that are Mobile Transformer Blocks instead of bottlenecks
# (each MTB keeps its row's hidden width and SE flag for its MoFFN). 0 gives GhostNet.
MAX_TRANSFORMER_BLOCKS = sum(1 for row in STAGES[-1] if row[4] == 1)

ARCH_ZOO = {
    '0.5x': dict(widen_factor=0.5, transformer_blocks=4),
    '0.75x': dict(widen_factor=0.75, transformer_blocks=4),
    '1.0x': dict(widen_factor=1.0, transformer_blocks=4),
    '1.5x': dict(widen_factor=1.5, transformer_blocks=4),
}


@MODELS.register_module()
class MoCoViT(MobileBackbone):
    """MoCoViT backbone emitting the ends of the stride-4/8/16/32 stages
    (24, 40, 112, 160 channels at 1.0x).

    Args:
        arch (str | dict): a name in ``ARCH_ZOO`` (``'0.5x'``, ``'0.75x'``, ``'1.0x'``,
            ``'1.5x'``) or a dict with ``widen_factor`` and optional ``transformer_blocks``
            (0-4, default 4; 0 builds GhostNet at that width).
        out_indices (Sequence[int]): stages to output, 0-3 (strides 4, 8, 16, 32).
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and stages 0..k-1.
        norm_eval (bool): keep norm layers in eval mode (frozen statistics) while training.
        num_heads (int): attention heads in MoSA (the paper's form: 1, d = channels).
        attention_ghost_relu (bool): ReLU inside MoSA's Ghost modules (default: linear, as
            the projections they replace).
        norm_cfg (dict, optional): the norm after every conv (default BN; SyncBN when training
            from scratch).
        with_cp (bool): gradient checkpointing per block, to save memory while training.
        drop_path_rate (float): stochastic depth over the MTB residual branches.
        deploy (bool): build the fused (BN-folded) form directly. Either form loads either
            form's weights (see ``MobileBackbone``).
    """
    arch_zoo = ARCH_ZOO
    custom_arch = 'a dict with widen_factor and optional transformer_blocks'

    def __init__(self, arch: Union[str, dict] = '1.0x',
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3), frozen_stages: int = -1,
                 norm_eval: bool = False, num_heads: int = 1, attention_ghost_relu: bool = False,
                 norm_cfg: Optional[dict] = None, with_cp: bool = False,
                 drop_path_rate: float = 0.0, deploy: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(out_indices, frozen_stages, norm_eval, with_cp, init_cfg)
        self.arch_name, arch = self._resolve_arch(arch)
        self.widen_factor = float(arch['widen_factor'])
        self.transformer_blocks = arch['transformer_blocks']
        self.num_heads, self.attention_ghost_relu = num_heads, attention_ghost_relu
        self.norm_cfg = norm_cfg or dict(type='BN')
        width = self.widen
        first_mtb = len(STAGES[-1]) - self.transformer_blocks
        drop_rates = [drop_path_rate * i / max(1, self.transformer_blocks - 1)
                      for i in range(self.transformer_blocks)]
        channels = []
        with self.building(deploy):
            k, hidden, out, se, stride = STEM_ROW
            self.stem = nn.Sequential(
                ConvBN(3, width(STEM_CHANNELS), 3, 2, 1, norm_cfg=norm_cfg), nn.ReLU(inplace=True),
                GhostBottleneck(width(STEM_CHANNELS), width(hidden), width(out), k, stride, se,
                                norm_cfg))
            in_c = width(out)
            self.stages = nn.ModuleList()
            for stage_idx, rows in enumerate(STAGES):
                blocks = []
                for row_idx, (k, hidden, out, se, stride) in enumerate(rows):
                    if stage_idx == len(STAGES) - 1 and row_idx >= first_mtb:
                        blocks.append(MobileTransformerBlock(
                            in_c, width(hidden), se, num_heads, attention_ghost_relu,
                            drop_path=drop_rates[row_idx - first_mtb], norm_cfg=norm_cfg))
                    else:
                        blocks.append(GhostBottleneck(in_c, width(hidden), width(out), k,
                                                      stride, se, norm_cfg))
                        in_c = width(out)
                self.stages.append(nn.Sequential(*blocks))
                channels.append(in_c)
        self.channels = tuple(channels)
        self.finish_building(deploy)

    def structure_kwargs(self) -> dict:
        return dict(arch=dict(widen_factor=self.widen_factor,
                              transformer_blocks=self.transformer_blocks),
                    num_heads=self.num_heads, attention_ghost_relu=self.attention_ghost_relu,
                    norm_cfg=self.norm_cfg)

    def describe(self) -> str:
        return f'{type(self).__name__} (arch {self.arch_name!r}, widen_factor {self.widen_factor})'

    def widen(self, channels: float) -> int:
        """A width of GhostNet-1.0x scaled by ``widen_factor`` (GhostNet's rounding)."""
        return ghost_divisible(channels * self.widen_factor)

    @classmethod
    def _resolve_arch(cls, arch):
        if isinstance(arch, str):
            return cls.named_arch(arch)
        if not isinstance(arch, dict) or 'widen_factor' not in arch or \
                set(arch) - {'widen_factor', 'transformer_blocks'}:
            raise ValueError(f'A custom MoCoViT arch is a dict with "widen_factor" and '
                             f'optional "transformer_blocks"; got {arch!r}')
        arch = {'transformer_blocks': MAX_TRANSFORMER_BLOCKS, **arch}
        if not arch['widen_factor'] > 0:
            raise ValueError(f'widen_factor={arch["widen_factor"]!r} must be positive')
        blocks = arch['transformer_blocks']
        if not isinstance(blocks, int) or not 0 <= blocks <= MAX_TRANSFORMER_BLOCKS:
            raise ValueError(f'transformer_blocks={blocks!r} is out of range; valid: 0 '
                             f'(GhostNet) ... {MAX_TRANSFORMER_BLOCKS} (the last stage\'s '
                             f'stride-1 rows)')
        return 'custom', arch

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.stem(x)
        outs = {}
        for stage_idx in range(max(self.out_indices) + 1):
            for block in self.stages[stage_idx]:
                x = self.run_block(block, x)
            outs[stage_idx] = x
        return tuple(outs[i] for i in self.out_indices)

    def frozen_modules(self) -> List[nn.Module]:
        return [self.stem, *self.stages[:self.frozen_stages]]
