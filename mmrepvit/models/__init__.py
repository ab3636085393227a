from .backbones import MoCoViT, RepViT
from .classifiers import MoCoViTClassifier, RepViTClassifier

__all__ = ['MoCoViT', 'MoCoViTClassifier', 'RepViT', 'RepViTClassifier']
