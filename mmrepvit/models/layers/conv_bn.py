"""Conv2d + norm pair that folds itself into one biased conv for deployment."""
from collections import OrderedDict

import torch
import torch.nn as nn
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
