"""The ImageNet models of the backbones (backbone + classifier head): what the published
parameter and multiply-add figures count, and what the classifier checkpoints hold. Not
registered: detection / segmentation never build them."""
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbones.ghostnet import GhostNet
from .backbones.mocovit import STAGES, MoCoViT
from .backbones.repvit import RepViT
from .layers import ConvBN


class BNLinear(nn.Sequential):
    """BatchNorm1d -> Linear, the original head's unit; ``fuse()`` folds the norm away."""

    def __init__(self, in_features, out_features):
        super().__init__(OrderedDict(bn=nn.BatchNorm1d(in_features),
                                     fc=nn.Linear(in_features, out_features)))
        nn.init.trunc_normal_(self.fc.weight, std=0.02)
        nn.init.zeros_(self.fc.bias)

    @torch.no_grad()
    def fuse(self):
        bn, fc = self.bn, self.fc
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        shift = bn.bias - bn.running_mean * scale
        fused = nn.Linear(fc.in_features, fc.out_features, device=fc.weight.device)
        fused.weight.copy_(fc.weight * scale[None, :])
        fused.bias.copy_(fc.bias + fc.weight @ shift)
        return fused


class DistilledHead(nn.Module):
    """The classifier and distillation heads; at inference their mean is the prediction, so
    the fused form is one Linear holding the mean of the two folded heads."""

    def __init__(self, in_features, num_classes=1000):
        super().__init__()
        self.head = BNLinear(in_features, num_classes)
        self.dist_head = BNLinear(in_features, num_classes)

    def forward(self, x):
        return (self.head(x) + self.dist_head(x)) / 2

    @torch.no_grad()
    def fuse(self):
        a, b = self.head.fuse(), self.dist_head.fuse()
        a.weight.copy_((a.weight + b.weight) / 2)
        a.bias.copy_((a.bias + b.bias) / 2)
        return a


class RepViTClassifier(nn.Module):
    """Backbone (last stage) -> global average pool -> ``DistilledHead``."""

    def __init__(self, arch='m1_1', num_classes=1000, **backbone_kwargs):
        super().__init__()
        self.backbone = RepViT(arch, out_indices=(3, ), **backbone_kwargs)
        self.classifier = DistilledHead(self.backbone.channels[-1], num_classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.backbone(x)[-1], 1).flatten(1)
        return self.classifier(x)

    def switch_to_deploy(self):
        """Fuse the backbone and fold the two BN-Linear heads into one Linear. Idempotent."""
        self.backbone.switch_to_deploy()
        if isinstance(self.classifier, DistilledHead):
            self.classifier = self.classifier.fuse()


class ClassificationHead(nn.Module):
    """GhostNet's ImageNet head, for size counting: Conv1x1 (-> 960 at 1.0x) BN ReLU, global
    pooling, Conv1x1 -> 1280 ReLU, dropout, FC. Not part of the detection backbone."""

    def __init__(self, in_channels, mid_channels, num_classes=1000):
        super().__init__()
        self.expand = nn.Sequential(ConvBN(in_channels, mid_channels, 1), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feat = nn.Sequential(nn.Conv2d(mid_channels, 1280, 1, bias=True),
                                  nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x):
        return self.fc(self.dropout(self.feat(self.pool(self.expand(x))).flatten(1)))


class MoCoViTClassifier(nn.Module):
    """Backbone (last stage only) + ``ClassificationHead``: the ImageNet model the paper's
    parameter and FLOP figures refer to."""
    backbone_type = MoCoViT

    def __init__(self, arch='1.0x', num_classes=1000, **backbone_kwargs):
        super().__init__()
        self.backbone = self.backbone_type(arch, out_indices=(3, ), **backbone_kwargs)
        self.head = ClassificationHead(self.backbone.channels[-1],  # the last block's hidden
                                       self.backbone.widen(STAGES[-1][-1][1]), num_classes)

    def forward(self, x):
        return self.head(self.backbone(x)[-1])


class GhostNetClassifier(MoCoViTClassifier):
    """GhostNet's ImageNet model (the GhostNet paper's size figures), as ``MoCoViTClassifier``."""
    backbone_type = GhostNet
