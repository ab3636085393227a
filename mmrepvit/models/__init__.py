from .backbones import GhostNet, MoCoViT, RepViT
from .classifiers import GhostNetClassifier, MoCoViTClassifier, RepViTClassifier

__all__ = ['GhostNet', 'GhostNetClassifier', 'MoCoViT', 'MoCoViTClassifier', 'RepViT',
           'RepViTClassifier']
