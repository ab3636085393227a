"""GhostNet (Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020) as a
multi-scale backbone: MoCoViT's Ghost bottleneck stages without its Mobile Transformer Blocks,
the baseline the MoCoViT paper compares against (RetinaNet on COCO).

Original code: https://github.com/huawei-noah/Efficient-AI-Backbones (ghostnet_pytorch). The
bottleneck rows (``mocovit.STAGES``) are that code's row table at width 1.0; the model is
checked against the paper's size (5.2M parameters, 141M multiply-adds; tests/test_mocovit.py),
not against outputs of that code."""
from ...registry import MODELS
from .mocovit import MoCoViT

# The GhostNet paper's widths.
ARCH_ZOO = {
    '0.5x': dict(widen_factor=0.5, transformer_blocks=0),
    '1.0x': dict(widen_factor=1.0, transformer_blocks=0),
    '1.3x': dict(widen_factor=1.3, transformer_blocks=0),
}


@MODELS.register_module()
class GhostNet(MoCoViT):
    """GhostNet backbone emitting the ends of the stride-4/8/16/32 stages (24, 40, 112, 160
    channels at 1.0x): ``MoCoViT`` with ``transformer_blocks=0``.

    Args:
        arch (str | dict): ``'0.5x'``, ``'1.0x'``, ``'1.3x'``, or a dict with
            ``widen_factor``. The other arguments are ``MoCoViT``'s (its attention options
            have nothing to act on here).
    """
    arch_zoo = ARCH_ZOO
    custom_arch = 'a dict with widen_factor'

    @classmethod
    def _resolve_arch(cls, arch):
        if isinstance(arch, dict):
            if arch.get('transformer_blocks', 0) != 0:
                raise ValueError(f'GhostNet has no transformer blocks, got arch={arch!r}; use '
                                 f'MoCoViT for transformer_blocks > 0')
            arch = dict(arch, transformer_blocks=0)
        return super()._resolve_arch(arch)
