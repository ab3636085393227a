from .mocovit import MoCoViT
from .repvit import RepViT

__all__ = ['RepViT', 'MoCoViT']
