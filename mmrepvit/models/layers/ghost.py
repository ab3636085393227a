"""GhostNet's building blocks (Han et al., "GhostNet: More Features from Cheap Operations",
CVPR 2020): the Ghost module and the Ghost bottleneck, the CNN blocks of MoCoViT."""
import math

import torch
import torch.nn as nn

from .conv_bn import ConvBN, SqueezeExcite, make_divisible


def ghost_divisible(value):
    """GhostNet's width rounding: a multiple of 4, never more than 10% below ``value``."""
    return make_divisible(value, 4, round_limit=0.9)


class GhostModule(nn.Module):
    """A 1x1 conv makes half the output maps; a cheap depthwise 3x3 conv makes the other half
    from them ("ghost" features). Both convs carry a norm; ``relu`` adds ReLU after each."""

    def __init__(self, in_channels, out_channels, relu=True, norm_cfg=None):
        super().__init__()
        self.out_channels = out_channels
        primary = math.ceil(out_channels / 2)
        self.primary = ConvBN(in_channels, primary, 1, norm_cfg=norm_cfg)
        self.cheap = ConvBN(primary, primary, 3, 1, 1, groups=primary, norm_cfg=norm_cfg)
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x):
        x1 = self.act(self.primary(x))
        x2 = self.act(self.cheap(x1))
        # an odd width drops the last ghost map, as in GhostNet
        return torch.cat([x1, x2], dim=1)[:, :self.out_channels]


def ghost_se(channels):
    """GhostNet's SE: a quarter of the channels (GhostNet rounding), ReLU, hard-sigmoid gate."""
    return SqueezeExcite(channels, rd_ratio=ghost_divisible(channels * 0.25) / channels,
                         divisor=1, gate_layer=nn.Hardsigmoid)


class GhostBottleneck(nn.Module):
    """Ghost (expand, ReLU) -> [depthwise kxk stride 2] -> [SE] -> Ghost (project, linear),
    plus a shortcut: identity, or depthwise kxk + 1x1 conv when the shape changes."""

    def __init__(self, in_channels, hidden_channels, out_channels, kernel_size=3, stride=1,
                 use_se=False, norm_cfg=None):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f'stride={stride!r} is not valid for a Ghost bottleneck; valid: 1, 2')
        self.expand = GhostModule(in_channels, hidden_channels, relu=True, norm_cfg=norm_cfg)
        self.downsample = ConvBN(hidden_channels, hidden_channels, kernel_size, stride,
                                 kernel_size // 2, groups=hidden_channels,
                                 norm_cfg=norm_cfg) if stride == 2 else nn.Identity()
        self.se = ghost_se(hidden_channels) if use_se else nn.Identity()
        self.project = GhostModule(hidden_channels, out_channels, relu=False, norm_cfg=norm_cfg)
        self.shortcut = nn.Identity() if stride == 1 and in_channels == out_channels else \
            nn.Sequential(ConvBN(in_channels, in_channels, kernel_size, stride, kernel_size // 2,
                                 groups=in_channels, norm_cfg=norm_cfg),
                          ConvBN(in_channels, out_channels, 1, norm_cfg=norm_cfg))

    def forward(self, x):
        return self.project(self.se(self.downsample(self.expand(x)))) + self.shortcut(x)
