"""Which RepViT variant a set of weights belongs to: key -> shape sets of ``ARCH_ZOO``."""
import functools

import torch

from ..models.backbones.repvit import ARCH_ZOO, RepViT

BN_COUNTER = 'num_batches_tracked'


def arch_of(model):
    """The arch dict that rebuilds ``model``'s structure (works for custom archs too)."""
    return dict(channels=tuple(model.channels), se=tuple(model.se_pattern), legacy=model.legacy)


def shapes_of(state_dict):
    return {k: tuple(v.shape) for k, v in state_dict.items()}


@functools.lru_cache(maxsize=None)
def variant_shapes(arch_name, deploy):
    """key -> shape of ``RepViT(arch_name)``, unfused or fused; built without real weights."""
    model = RepViT(arch_name).to('meta').eval()
    if deploy:
        model.switch_to_deploy()
    return shapes_of(model.state_dict())


def _without_bn_counters(shapes):
    return {k: s for k, s in shapes.items() if not k.endswith(BN_COUNTER)}


def fitting_variants(shapes, deploy):
    """Names in ``ARCH_ZOO`` whose backbone has exactly these keys and shapes (the BN
    ``num_batches_tracked`` counters aside). Fused m1_1 and m2 (and m0_9 and m1) coincide."""
    shapes = _without_bn_counters(shapes)
    stem = shapes.get('stem.2.weight') or shapes.get('stem.2.conv.weight')
    candidates = [name for name, arch in ARCH_ZOO.items()  # skip building the hopeless ones
                  if stem is None or arch['channels'][0] == stem[0]]
    return [name for name in candidates
            if _without_bn_counters(variant_shapes(name, deploy)) == shapes]


def build_unfused_twin(model):
    """An unfused RepViT with ``model``'s structure, on CPU: to fuse weights for a deploy one."""
    return RepViT(arch=arch_of(model))


@torch.no_grad()
def fuse_weights(state_dict, model):
    """Unfused weights in our layout -> the fused state_dict of ``model``'s structure."""
    twin = build_unfused_twin(model)
    twin.load_state_dict(state_dict, strict=True)
    twin.eval().switch_to_deploy()
    return twin.state_dict()
