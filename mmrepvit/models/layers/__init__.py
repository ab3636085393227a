from .conv_bn import ConvBN, RepDWConv, SqueezeExcite, fuse_conv_bn_weights, make_divisible
from .ghost import GhostBottleneck, GhostModule, ghost_divisible, ghost_se
from .mobile_attention import MobileFFN, MobileSelfAttention, MobileTransformerBlock, TokenAttention
from .roi_align import SeparableRoIAlign, roi_align

__all__ = ['ConvBN', 'fuse_conv_bn_weights', 'RepDWConv', 'SqueezeExcite', 'make_divisible',
           'GhostModule', 'GhostBottleneck', 'ghost_divisible', 'ghost_se', 'TokenAttention',
           'MobileSelfAttention', 'MobileFFN', 'MobileTransformerBlock', 'SeparableRoIAlign',
           'roi_align']
