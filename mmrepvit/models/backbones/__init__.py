from .ghostnet import GhostNet
from .mocovit import MoCoViT
from .repvit import RepViT

__all__ = ['RepViT', 'MoCoViT', 'GhostNet']
