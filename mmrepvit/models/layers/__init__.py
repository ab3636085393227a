from .conv_bn import ConvBN, fuse_conv_bn_weights
from .ghost import GhostBottleneck, GhostModule, ghost_divisible, ghost_se
from .mobile_attention import MobileFFN, MobileSelfAttention, MobileTransformerBlock, TokenAttention
from .rep_dwconv import RepDWConv
from .roi_align import SeparableRoIAlign, roi_align
from .squeeze_excite import SqueezeExcite, make_divisible

__all__ = ['ConvBN', 'fuse_conv_bn_weights', 'RepDWConv', 'SqueezeExcite', 'make_divisible',
           'GhostModule', 'GhostBottleneck', 'ghost_divisible', 'ghost_se', 'TokenAttention',
           'MobileSelfAttention', 'MobileFFN', 'MobileTransformerBlock', 'SeparableRoIAlign',
           'roi_align']
