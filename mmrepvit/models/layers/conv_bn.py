"""Convolution blocks that fold into one biased conv for deployment: a Conv2d + norm pair and
RepViT's re-parameterisable depthwise token mixer (RepVGG-style); and the squeeze-excite gate."""
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer


def fuse_conv_bn_weights(weight, bias, bn):
    """Fold ``bn`` (running statistics) into a conv's ``weight``/``bias`` (bias may be None)."""
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    fused_b = bn.bias - bn.running_mean * scale
    if bias is not None:
        fused_b = fused_b + bias * scale
    return weight * scale.reshape(-1, *([1] * (weight.dim() - 1))), fused_b


class ConvBN(nn.Sequential):
    """Bias-free conv followed by a norm layer; ``fuse()`` returns the equivalent conv."""

    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, padding=0,
                 groups=1, bn_weight_init=1.0, norm_cfg=None):
        super().__init__(OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups,
                           bias=False),
            bn=build_norm_layer(norm_cfg or dict(type='BN'), out_channels)[1]))
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)

    @torch.no_grad()
    def fuse(self):
        c = self.conv
        fused = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding,
                          groups=c.groups, bias=True, device=c.weight.device)
        weight, bias = fuse_conv_bn_weights(c.weight, None, self.bn)
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
        return fused


class RepDWConv(nn.Module):
    """``bn(dw3x3_bn(x) + dw1x1(x) + x)``, trained as three branches, deployed as one 3x3 conv.

    ``legacy=True`` is the first release's form (RepViT m1/m2/m3 checkpoints): the 1x1 branch
    carries its own norm and there is no outer norm.
    """

    def __init__(self, channels, legacy=False, norm_cfg=None):
        super().__init__()
        self.legacy = legacy
        self.dw3x3 = ConvBN(channels, channels, 3, 1, 1, groups=channels, norm_cfg=norm_cfg)
        if legacy:
            self.dw1x1 = ConvBN(channels, channels, 1, groups=channels, norm_cfg=norm_cfg)
            self.bn = nn.Identity()
        else:
            self.dw1x1 = nn.Conv2d(channels, channels, 1, groups=channels, bias=True)
            self.bn = build_norm_layer(norm_cfg or dict(type='BN'), channels)[1]

    def forward(self, x):
        return self.bn(self.dw3x3(x) + self.dw1x1(x) + x)

    @torch.no_grad()
    def fuse(self):
        conv3 = self.dw3x3.fuse()
        conv1 = self.dw1x1.fuse() if self.legacy else self.dw1x1
        identity = F.pad(torch.ones_like(conv1.weight), [1, 1, 1, 1])  # 1 at the 3x3 centre
        weight = conv3.weight + F.pad(conv1.weight, [1, 1, 1, 1]) + identity
        bias = conv3.bias + conv1.bias
        if not self.legacy:
            weight, bias = fuse_conv_bn_weights(weight, bias, self.bn)
        conv3.weight.copy_(weight)
        conv3.bias.copy_(bias)
        return conv3


def make_divisible(value, divisor=8, round_limit=0.0):
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``divisor``), one step
    up when rounding lost more than ``1 - round_limit`` of ``value`` (MobileNet's rule; RepViT's
    SE uses plain rounding)."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new_value + divisor if new_value < round_limit * value else new_value


class SqueezeExcite(nn.Module):
    """``x * gate(fc2(relu(fc1(mean of x))))``, 1x1 convs, ``rd_ratio`` of the channels."""

    def __init__(self, channels, rd_ratio=0.25, divisor=8, gate_layer=nn.Sigmoid):
        super().__init__()
        hidden = make_divisible(channels * rd_ratio, divisor)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)
        self.gate = gate_layer()

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
