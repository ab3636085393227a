"""RepViT (Wang et al., "RepViT: Revisiting Mobile CNN From ViT Perspective", CVPR 2024) as a
multi-scale backbone for detection and segmentation, with structural re-parameterisation."""
import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath

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


def default_se_pattern(depth, first_stage):
    """The published rule: SE on alternate rows (never on the stride-2 row), none on the last."""
    pattern = ['1' if i % 2 == (0 if first_stage else 1) else '0' for i in range(depth)]
    pattern[-1] = '0'
    return ''.join(pattern)


class ChannelMixer(nn.Module):
    """Pointwise expand -> GELU -> project, the FFN of every RepViT block (no residual here)."""

    def __init__(self, channels, hidden, norm_cfg):
        super().__init__()
        self.fc1 = ConvBN(channels, hidden, norm_cfg=norm_cfg)
        self.act = nn.GELU()
        # zero-initialised last norm: each block starts as identity on its FFN branch
        self.fc2 = ConvBN(hidden, channels, bn_weight_init=0.0, norm_cfg=norm_cfg)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class RepViTBlock(nn.Module):
    """Token mixer (RepDWConv, or a stride-2 depthwise conv + 1x1 projection), optional SE,
    then a residual channel mixer."""

    def __init__(self, in_channels, out_channels, stride, use_se, legacy=False,
                 expand_ratio=2, drop_path=0.0, norm_cfg=dict(type='BN')):
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
        deploy (bool): build the re-parameterised (fused) form, to load fused checkpoints.
    """
    arch_zoo = ARCH_ZOO
    num_stages = 4

    def __init__(self, arch='m1_1', out_indices=(0, 1, 2, 3), taps='segmentation',
                 frozen_stages=-1, norm_eval=False, norm_cfg=dict(type='BN'), with_cp=False,
                 drop_path_rate=0.0, deploy=False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.arch_name, arch = self._resolve_arch(arch)
        self.channels = tuple(arch['channels'])
        self.se_pattern = tuple(arch['se'])
        self.legacy = bool(arch.get('legacy', False))
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

        out_indices = tuple(out_indices) if isinstance(out_indices, (list, tuple)) \
            else (out_indices, )
        bad = [i for i in out_indices if not isinstance(i, int) or not 0 <= i < 4]
        if bad or not out_indices:
            raise ValueError(f'out_indices={out_indices!r}: {bad or "empty"} not valid; '
                             f'each index must be a stage in 0-3 (strides 4, 8, 16, 32)')
        self.out_indices = out_indices
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f'frozen_stages={frozen_stages!r} is out of range; valid: -1 '
                             f'(nothing), 0 (stem) ... 4 (stem and all four stages)')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.deploy = False

        c0 = self.channels[0]
        self.stem = nn.Sequential(
            ConvBN(3, c0 // 2, 3, 2, 1, norm_cfg=norm_cfg), nn.GELU(),
            ConvBN(c0 // 2, c0, 3, 2, 1, norm_cfg=norm_cfg))
        num_rows = self.stage_ends[-1]
        dpr = torch.linspace(0, drop_path_rate, num_rows).tolist()
        self.blocks = nn.ModuleList()
        in_c = c0
        for stage, (out_c, pattern) in enumerate(zip(self.channels, self.se_pattern)):
            for i, se in enumerate(pattern):
                stride = 2 if stage > 0 and i == 0 else 1
                self.blocks.append(RepViTBlock(
                    in_c, out_c, stride, se == '1', legacy=self.legacy,
                    drop_path=dpr[len(self.blocks)], norm_cfg=norm_cfg))
                in_c = out_c
        # stage of each row (1-based rows as in the original's `features` list)
        self.row_stage = [s for s, d in enumerate(self.depths) for _ in range(d)]
        self.out_channels = [self.channels[i] for i in out_indices]
        self.out_strides = [4 * 2**i for i in out_indices]

        if deploy:
            self.switch_to_deploy()
        self._freeze_stages()

    @classmethod
    def _resolve_arch(cls, arch):
        if isinstance(arch, str):
            if arch not in cls.arch_zoo:
                raise KeyError(f'Unknown RepViT arch {arch!r}; valid: '
                               f'{", ".join(cls.arch_zoo)} (or a dict with channels and se '
                               f'or depths)')
            return arch, dict(cls.arch_zoo[arch])
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

    def stage_rows(self, stage):
        """Row indices (1-based, like the original's ``features``) of one stage."""
        start = self.stage_ends[stage - 1] + 1 if stage > 0 else 1
        return range(start, self.stage_ends[stage] + 1)

    def forward(self, x):
        x = self.stem(x)
        last = max(self.tap_rows[i] for i in self.out_indices)
        wanted = {self.tap_rows[i]: i for i in self.out_indices}
        feats = {}
        for row in range(1, last + 1):
            block = self.blocks[row - 1]
            if self.with_cp and self.training and x.requires_grad:
                x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
            if row in wanted:
                feats[wanted[row]] = x
        return tuple(feats[i] for i in self.out_indices)

    def frozen_modules(self):
        return [self.stem] + [self.blocks[r - 1] for s in range(self.frozen_stages)
                              for r in self.stage_rows(s)]

    def init_weights(self):
        # 'Pretrained' goes through our loader (any published layout, strict, weights_only);
        # other initialisers (a list may mix both) stay mmengine's.
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg]
        pretrained = [c for c in cfgs if c and c.get('type') == 'Pretrained']
        if not pretrained:
            return super().init_weights()
        others = [c for c in cfgs if c and c.get('type') != 'Pretrained']
        if others:
            self.init_cfg = others
            super().init_weights()
        from ...checkpoint import load_backbone_checkpoint
        load_backbone_checkpoint(self, pretrained[-1]['checkpoint'],
                                 prefix=pretrained[-1].get('prefix'))
        self._is_init = True
