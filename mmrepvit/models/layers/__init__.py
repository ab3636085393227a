from .conv_bn import ConvBN, fuse_conv_bn_weights
from .rep_dwconv import RepDWConv
from .squeeze_excite import SqueezeExcite, make_divisible

__all__ = ['ConvBN', 'fuse_conv_bn_weights', 'RepDWConv', 'SqueezeExcite', 'make_divisible']
