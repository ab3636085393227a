"""RepViT (Wang et al., "RepViT: Revisiting Mobile CNN From ViT Perspective", CVPR 2024) as a
multi-scale backbone for detection and segmentation, with structural re-parameterisation.

Written from the paper; checked against the original code (https://github.com/THU-MIG/RepViT):
every block's output of its golden cases (tests/data, made by running that code) within 1e-5,
1e-4 fused (tests/test_repvit.py), and its checkpoints' key layouts, every variant."""
import functools
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn.bricks import DropPath

from ...checkpoint.backbone_weights import Shapes, shapes_of
from ...checkpoint.layouts import REPVIT_OFFICIAL, REPVIT_OFFICIAL_LEGACY, REPVIT_TIMM
from ...registry import MODELS
from ..layers import ConvBN, RepDWConv, SqueezeExcite
from .base import MobileBackbone

# Every published variant: widths of the four stages and, per stage, which rows carry SE
# ('1') -- the string's length is the stage's depth. The first row of stages 2-4 halves the
# resolution. Legacy variants (the first release) use the legacy RepDWConv.
ARCH_ZOO = {
    'm0_6': dict(channels=(40, 80, 160, 320), se=('10', '010', '0101010100', '01')),
    'm0_9': dict(channels=(48, 96, 192, 384), se=('100', '0100', '0101010101010100', '010')),
    'm1_0': dict(channels=(56, 112, 224, 448), se=('100', '0100', '0101010101010100', '010')),
    'm1_1': dict(channels=(64, 128, 256, 512), se=('100', '0100', '01010101010100', '010')),
    'm1_5': dict(channels=(64, 128, 256, 512),
                 se=('10100', '010100', '01010101010101010101010100', '01010')),
    'm2_3': dict(channels=(80, 160, 320, 640),
                 se=('1010100', '01010100', '010101010101010101010101010101010100', '010')),
    'm1': dict(channels=(48, 96, 192, 384), se=('100', '0100', '0101010101010100', '010'),
               legacy=True),
    'm2': dict(channels=(64, 128, 256, 512), se=('100', '0100', '01010101010100', '010'),
               legacy=True),
    'm3': dict(channels=(64, 128, 256, 512),
               se=('10100', '010100', '01010101010101010100', '010'), legacy=True),
}
TAPS = ('segmentation', 'detection')


def default_se_pattern(depth: int, first_stage: bool) -> str:
    """The published rule: SE on alternate rows (never on the stride-2 row), none on the last."""
    pattern = ['1' if i % 2 == (0 if first_stage else 1) else '0' for i in range(depth)]
    pattern[-1] = '0'
    return ''.join(pattern)


class ChannelMixer(nn.Sequential):
    """Pointwise expand -> GELU -> project, the FFN of every RepViT block (no residual here);
    its last norm starts at zero, so each block starts as identity on its FFN branch."""

    def __init__(self, channels, hidden, norm_cfg):
        super().__init__(OrderedDict(
            fc1=ConvBN(channels, hidden, norm_cfg=norm_cfg), act=nn.GELU(),
            fc2=ConvBN(hidden, channels, bn_weight_init=0.0, norm_cfg=norm_cfg)))


class RepViTBlock(nn.Module):
    """Token mixer (RepDWConv, or a stride-2 depthwise conv + 1x1 projection), optional SE,
    then a residual channel mixer."""

    def __init__(self, in_channels, out_channels, stride, use_se, legacy=False,
                 expand_ratio=2, drop_path=0.0, norm_cfg=None):
        super().__init__()
        if stride == 1:
            assert in_channels == out_channels, 'a stride-1 RepViT block keeps its width'
            self.token_mixer = RepDWConv(in_channels, legacy=legacy, norm_cfg=norm_cfg)
            self.proj = nn.Identity()
        else:
            self.token_mixer = ConvBN(in_channels, in_channels, 3, stride, 1,
                                      groups=in_channels, norm_cfg=norm_cfg)
            self.proj = ConvBN(in_channels, out_channels, norm_cfg=norm_cfg)
        self.se = SqueezeExcite(in_channels) if use_se else nn.Identity()
        self.channel_mixer = ChannelMixer(out_channels, out_channels * expand_ratio, norm_cfg)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        x = self.proj(self.se(self.token_mixer(x)))
        return x + self.drop_path(self.channel_mixer(x))


@MODELS.register_module()
class RepViT(MobileBackbone):
    """RepViT backbone emitting stride-4/8/16/32 features.

    Args:
        arch (str | dict): a name in ``ARCH_ZOO`` (``'m0_6'`` ... ``'m2_3'``, legacy ``'m1'``,
            ``'m2'``, ``'m3'``) or a dict with ``channels`` (4 widths) and either ``se`` (4
            strings of '0'/'1', one character per row) or ``depths`` (4 row counts, SE placed
            by the published rule); optional ``legacy``.
        out_indices (Sequence[int]): stages to output, 0-3 (strides 4, 8, 16, 32).
        taps (str): ``'segmentation'`` takes each stage's last row; ``'detection'`` takes the
            row before it for stages 0-2 (the original Mask R-CNN configs, and timm's stages).
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and stages 0..k-1.
        norm_eval (bool): keep norm layers in eval mode (frozen statistics) while training.
        deploy (bool): build the fused form directly. Either form loads either form's
            weights, in any of ``checkpoint_layouts`` (see ``MobileBackbone``).
    """
    arch_zoo = ARCH_ZOO
    custom_arch = 'a dict with channels and se or depths'
    # the original release (mmdet 2 / mmseg 0 models of it too: under ``backbone.``), timm's
    checkpoint_layouts = (REPVIT_OFFICIAL, REPVIT_OFFICIAL_LEGACY, REPVIT_TIMM)

    def __init__(self, arch: Union[str, dict] = 'm1_1',
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 taps: str = 'segmentation', frozen_stages: int = -1, norm_eval: bool = False,
                 norm_cfg: Optional[dict] = None, with_cp: bool = False,
                 drop_path_rate: float = 0.0, deploy: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(out_indices, frozen_stages, norm_eval, with_cp, init_cfg)
        self.arch_name, arch = self._resolve_arch(arch)
        self.channels = tuple(arch['channels'])
        self.se_pattern = tuple(arch['se'])
        self.legacy = bool(arch.get('legacy', False))
        self.norm_cfg = norm_cfg or dict(type='BN')
        self.depths = tuple(len(p) for p in self.se_pattern)
        self.stage_ends = tuple(sum(self.depths[:i + 1]) for i in range(4))  # row indices

        if taps not in TAPS:
            raise ValueError(f'taps={taps!r} is not one of {TAPS}')
        if taps == 'detection' and min(self.depths[1:]) < 2:
            raise ValueError(f'taps="detection" needs stages 1-3 of two rows or more, '
                             f'got depths {self.depths}')
        self.taps = taps
        self.tap_rows = self.stage_ends if taps == 'segmentation' else \
            tuple(e - 1 for e in self.stage_ends[:3]) + (self.stage_ends[3], )

        dpr = [drop_path_rate * i / max(1, self.stage_ends[-1] - 1)
               for i in range(self.stage_ends[-1])]
        with self.building(deploy):
            c0 = self.channels[0]
            self.stem = nn.Sequential(
                ConvBN(3, c0 // 2, 3, 2, 1, norm_cfg=norm_cfg), nn.GELU(),
                ConvBN(c0 // 2, c0, 3, 2, 1, norm_cfg=norm_cfg))
            self.blocks = nn.ModuleList()
            in_c = c0
            for stage, (out_c, pattern) in enumerate(zip(self.channels, self.se_pattern)):
                for i, se in enumerate(pattern):
                    stride = 2 if stage > 0 and i == 0 else 1
                    self.blocks.append(RepViTBlock(
                        in_c, out_c, stride, se == '1', legacy=self.legacy,
                        drop_path=dpr[len(self.blocks)], norm_cfg=norm_cfg))
                    in_c = out_c
        self.finish_building(deploy)

    def structure_kwargs(self) -> dict:
        return dict(arch=dict(channels=self.channels, se=self.se_pattern, legacy=self.legacy),
                    norm_cfg=self.norm_cfg)

    def describe(self) -> str:
        arch = self.arch_name if self.arch_name != 'custom' else \
            f'custom (channels={self.channels}, depths={self.depths})'
        return f'RepViT (arch {arch!r})'

    @classmethod
    def _resolve_arch(cls, arch):
        if isinstance(arch, str):
            return cls.named_arch(arch)
        if not isinstance(arch, dict) or 'channels' not in arch or \
                ('se' in arch) == ('depths' in arch):
            raise ValueError(f'A custom RepViT arch is a dict with "channels" and one of '
                             f'"se" or "depths"; got {arch!r}')
        arch = dict(arch)
        if 'depths' in arch:
            arch['se'] = tuple(default_se_pattern(d, i == 0)
                               for i, d in enumerate(arch.pop('depths')))
        if len(arch['channels']) != 4 or len(arch['se']) != 4 or \
                any(not p or set(p) - {'0', '1'} for p in arch['se']):
            raise ValueError(f'A custom RepViT arch needs 4 stage widths and 4 non-empty SE '
                             f'patterns of 0/1; got {arch!r}')
        return 'custom', arch

    @staticmethod
    @functools.lru_cache(maxsize=None)
    def variant_shapes(arch_name: str, deploy: bool) -> Shapes:
        """key -> shape of a published variant, plain or fused (built on the meta device)."""
        with torch.device('meta'):
            return shapes_of(RepViT(arch_name, deploy=deploy).state_dict())

    @classmethod
    def fitting_archs(cls, given: Shapes, deploy: Optional[bool] = None) -> List[str]:
        """Published variants with exactly these keys and shapes (in the fused form, in the
        plain one, or either when ``deploy`` is None). Fused m1_1 and m2 (and m0_9 and m1)
        coincide."""
        stem = given.get('stem.2.weight') or given.get('stem.2.conv.weight')
        forms = (False, True) if deploy is None else (deploy, )
        return [name for name, arch in cls.arch_zoo.items()  # skip building hopeless ones
                if stem is None or arch['channels'][0] == stem[0]
                if any(cls.variant_shapes(name, d) == given for d in forms)]

    def fitting_hint(self, given: Shapes) -> str:
        fits = self.fitting_archs(given)
        if fits:
            return (f'It fits arch {" or ".join(map(repr, fits))}: build the backbone with '
                    f'arch={fits[0]!r} (and the neck with its channels).')
        return f'It fits none of the published variants exactly ({", ".join(self.arch_zoo)}).'

    def stage_rows(self, stage: int) -> range:
        """Row indices (1-based, like the original's ``features``) of one stage."""
        start = self.stage_ends[stage - 1] + 1 if stage > 0 else 1
        return range(start, self.stage_ends[stage] + 1)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.stem(x)
        wanted = {self.tap_rows[i]: i for i in self.out_indices}
        feats = {}
        for row in range(1, max(wanted) + 1):
            x = self.run_block(self.blocks[row - 1], x)
            if row in wanted:
                feats[wanted[row]] = x
        return tuple(feats[i] for i in self.out_indices)

    def frozen_modules(self) -> List[nn.Module]:
        return [self.stem] + [self.blocks[r - 1] for s in range(self.frozen_stages)
                              for r in self.stage_rows(s)]
