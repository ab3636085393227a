"""RepViT's re-parameterisable depthwise token mixer (RepVGG-style, depthwise)."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer

from .conv_bn import ConvBN, fuse_conv_bn_weights


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
        identity = torch.zeros_like(conv3.weight)
        identity[:, :, 1, 1] = 1.0
        weight = conv3.weight + F.pad(conv1.weight, [1, 1, 1, 1]) + identity
        bias = conv3.bias + conv1.bias
        if not self.legacy:
            weight, bias = fuse_conv_bn_weights(weight, bias, self.bn)
        conv3.weight.copy_(weight)
        conv3.bias.copy_(bias)
        return conv3
