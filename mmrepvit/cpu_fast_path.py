"""The CPU fast path: the same function as a fused model, computed faster on CPU, for running,
never for saving: channels-last memory format (oneDNN's native layout) and ``SeparableRoIAlign``
in place of mmcv's single-threaded RoIAlign. docs/speed.md has what each part is worth.
"""
import weakref

import torch
import torch.nn as nn
from mmcv.ops import RoIAlign

from .fusion import fuse_model
from .models.layers import SeparableRoIAlign


class ContiguousInputs:
    """Forward pre-hook giving a module contiguous (NCHW) copies of channels-last inputs: one
    copy per input tensor, shared by every hooked module while the tensor lives (Mask R-CNN's
    box and mask heads read the same FPN maps). An in-place change of the source after copying
    would not be seen (no mmdet / mmseg head does that)."""

    def __init__(self):
        self.copies = {}

    def __call__(self, module, args):
        return tuple(self.contiguous(a) if isinstance(a, torch.Tensor) else a for a in args)

    def contiguous(self, tensor):
        if tensor.is_contiguous():
            return tensor
        key = id(tensor)
        if key not in self.copies:
            self.copies[key] = tensor.contiguous()
            weakref.finalize(tensor, self.copies.pop, key, None)
        return self.copies[key]


def use_separable_roi_align(model: nn.Module) -> nn.Module:
    """Swap every average-pooling ``mmcv.ops.RoIAlign`` in ``model`` for
    ``SeparableRoIAlign`` (same outputs, several times faster on CPU); returns ``model``."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, RoIAlign) and child.pool_mode == 'avg':
                setattr(parent, name, SeparableRoIAlign.from_mmcv(child))
    return model


def use_channels_last(model: nn.Module) -> nn.Module:
    """Put ``model``'s weights in channels-last layout (its convolutions then run in it) and
    give mmcv's compiled ops, which index raw NCHW memory, contiguous inputs."""
    model.to(memory_format=torch.channels_last)
    hook = ContiguousInputs()
    for module in model.modules():
        if type(module).__module__.startswith('mmcv.ops') and \
                not getattr(module, '_mmrepvit_contiguous', False):
            module.register_forward_pre_hook(hook)
            module._mmrepvit_contiguous = True
    return model


@torch.no_grad()
def optimize_for_cpu(model: nn.Module, channels_last: bool = True,
                     separable_roi_align: bool = True, compile: bool = False) -> nn.Module:
    """Fuse ``model`` (if not yet) and make its inference fast on CPU, in place: the same
    function, float rounding aside. ``compile=True`` also compiles the backbone (a bare
    backbone: all of it) with TorchInductor, weights frozen as constants (docs/speed.md)."""
    fuse_model(model)  # idempotent
    if separable_roi_align:
        use_separable_roi_align(model)
    if channels_last:
        use_channels_last(model)
    if compile:
        backbone = getattr(model, 'backbone', None)
        (backbone if isinstance(backbone, nn.Module) else model).compile(
            options={'freezing': True})
    return model
