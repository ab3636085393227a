"""MoCoViT's Mobile Transformer Block (Ma et al., "MoCoViT: Mobile Convolutional Vision
Transformer", arXiv 2205.12635): Mobile Self-Attention (MoSA) and the Mobile FFN (MoFFN). The
paper gives no code; the choices it leaves open are explained in docs/mocovit.md.
"""
import torch.nn as nn
from mmcv.cnn.bricks import DropPath

from .conv_bn import ConvBN
from .ghost import GhostModule, ghost_se


class TokenAttention(nn.Module):
    """``softmax(V V^T * scale) V`` over the H*W tokens of a (B, C, H, W) map, V serving as
    query, key and value (MoSA's branch sharing). Parameter-free; ``num_heads`` splits the
    channels into independent groups, the paper's form is a single head."""

    def __init__(self, channels, num_heads=1):
        super().__init__()
        if not isinstance(num_heads, int) or num_heads < 1 or channels % num_heads:
            raise ValueError(f'num_heads={num_heads!r} must be a positive divisor of the '
                             f'{channels} channels')
        self.num_heads, self.scale = num_heads, (channels // num_heads) ** -0.5

    def forward(self, v):
        b, c, h, w = v.shape
        tokens = v.reshape(b, self.num_heads, c // self.num_heads, h * w).transpose(-2, -1)
        # explicit matmuls (not scaled_dot_product_attention) so FLOP counters see them
        weights = (tokens @ tokens.transpose(-2, -1) * self.scale).softmax(dim=-1)
        return (weights @ tokens).transpose(-2, -1).reshape(b, c, h, w)


class MobileSelfAttention(nn.Module):
    """MoSA: ``Ghost_out(attention(V) + DWConv(V))`` with ``V = Ghost_shared(x)``: one Ghost
    module replaces the Q, K and V projections (branch sharing); the depthwise conv on V adds
    the local detail that global attention smooths away."""

    def __init__(self, channels, num_heads=1, ghost_relu=False, norm_cfg=None):
        super().__init__()
        self.shared = GhostModule(channels, channels, relu=ghost_relu, norm_cfg=norm_cfg)
        self.attention = TokenAttention(channels, num_heads)
        self.local = ConvBN(channels, channels, 3, 1, 1, groups=channels, norm_cfg=norm_cfg)
        self.proj = GhostModule(channels, channels, relu=ghost_relu, norm_cfg=norm_cfg)

    def forward(self, x):
        v = self.shared(x)
        return self.proj(self.attention(v) + self.local(v))


class MobileFFN(nn.Module):
    """MoFFN: the MLP's two linear layers become Ghost modules (the first with ReLU, the
    second linear, as in a Ghost bottleneck), with an optional SE gate between them."""

    def __init__(self, channels, hidden_channels, use_se=False, norm_cfg=None):
        super().__init__()
        self.expand = GhostModule(channels, hidden_channels, relu=True, norm_cfg=norm_cfg)
        self.se = ghost_se(hidden_channels) if use_se else nn.Identity()
        self.project = GhostModule(hidden_channels, channels, relu=False, norm_cfg=norm_cfg)

    def forward(self, x):
        return self.project(self.se(self.expand(x)))


class MobileTransformerBlock(nn.Module):
    """MTB: ``x = x + MoSA(x); x = x + MoFFN(x)`` (no extra norm: every Ghost module already
    ends in BN, and none is drawn in the paper)."""

    def __init__(self, channels, hidden_channels, use_se=False, num_heads=1, ghost_relu=False,
                 drop_path=0.0, norm_cfg=None):
        super().__init__()
        self.mosa = MobileSelfAttention(channels, num_heads, ghost_relu, norm_cfg=norm_cfg)
        self.moffn = MobileFFN(channels, hidden_channels, use_se, norm_cfg=norm_cfg)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        x = x + self.drop_path(self.mosa(x))
        return x + self.drop_path(self.moffn(x))
