"""Re-parameterise a whole detector / segmentor, its config and its checkpoint for deployment.

The backbone fuses itself (``switch_to_deploy``); every remaining Conv -> BatchNorm pair (e.g.
the BN ConvModules of a segmentation head) is folded into its conv, so no BatchNorm is left.
A deploy config builds that same structure directly: ``backbone.deploy=True`` and BN-normed
modules built without a norm (their conv then carries a bias). ``optimize_for_cpu`` adds the
CPU fast path on top of a fused model (for running, not for saving).
"""
import copy
import weakref

import torch
from mmcv.cnn import fuse_conv_bn
from torch.nn.modules.batchnorm import _BatchNorm

DEPLOY_META_KEY = 'mmrepvit_deploy'
BN_TYPES = ('BN', 'BN2d', 'SyncBN', 'BatchNorm2d', 'SyncBatchNorm', 'MMSyncBN')


@torch.no_grad()
def fuse_model(model):
    """Fuse ``model`` in place (eval statistics) and return it."""
    for module in model.modules():
        if callable(getattr(module, 'switch_to_deploy', None)):
            module.switch_to_deploy()
    fuse_conv_bn(model)
    return model


def count_batchnorms(model):
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


def _drop_bn_norm_cfgs(node):
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if key == 'norm_cfg' and isinstance(value, dict) and value.get('type') in BN_TYPES:
                node[key] = None
            else:
                _drop_bn_norm_cfgs(value)
    elif isinstance(node, (list, tuple)):
        for item in node:
            _drop_bn_norm_cfgs(item)


def deploy_model_cfg(model_cfg):
    """The model config whose freshly built model has the fused structure."""
    model_cfg = copy.deepcopy(model_cfg)
    backbone = model_cfg['backbone']
    backbone['deploy'] = True
    backbone['init_cfg'] = None  # the deploy checkpoint holds every weight
    for key, value in model_cfg.items():
        if key != 'backbone':
            _drop_bn_norm_cfgs(value)
    return model_cfg


def fuse_state_dict(model, checkpoint):
    """Load ``checkpoint`` (an mmengine checkpoint dict) into ``model``, fuse, return the
    fused checkpoint dict with ``meta[DEPLOY_META_KEY] = True``."""
    model.load_state_dict(checkpoint.get('state_dict', checkpoint), strict=True)
    model.eval()
    fuse_model(model)
    left = count_batchnorms(model)
    if left:
        raise RuntimeError(f'{left} BatchNorm layers could not be fused (not preceded by a conv)')
    meta = dict(checkpoint.get('meta', {}) or {})
    meta[DEPLOY_META_KEY] = True
    return dict(meta=meta, state_dict={k: v.detach().clone()
                                       for k, v in model.state_dict().items()})


def is_deploy_checkpoint(checkpoint):
    return bool((checkpoint.get('meta') or {}).get(DEPLOY_META_KEY, False))


class ContiguousInputs:
    """Forward pre-hook giving a module contiguous (NCHW) copies of channels-last inputs.

    One copy per input tensor, shared by every hooked module while that tensor lives (Mask
    R-CNN's box and mask RoI extractors read the same FPN maps: copying each map once instead
    of per extractor measured 4% of the whole model). A copy is dropped with its source; an
    in-place change of the source after copying would not be seen (no mmdet / mmseg head
    does that).
    """

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


def use_separable_roi_align(model):
    """Swap every average-pooling ``mmcv.ops.RoIAlign`` in ``model`` for
    ``SeparableRoIAlign`` (same outputs, several times faster on CPU); returns ``model``."""
    from mmcv.ops import RoIAlign

    from .models.layers import SeparableRoIAlign
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, RoIAlign) and child.pool_mode == 'avg':
                setattr(parent, name, SeparableRoIAlign.from_mmcv(child))
    return model


def use_channels_last(model):
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
def optimize_for_cpu(model, channels_last=True, separable_roi_align=True, compile=False):
    """Fuse ``model`` (if not yet) and make its inference fast on CPU, in place.

    Channels-last memory format is oneDNN's native layout for convolutions: without it every
    convolution reorders its input and output (docs/speed.md has what was measured, and what
    did not help). mmcv's compiled ops (RoIAlign, ...) index raw NCHW memory and silently
    compute garbage from a channels-last tensor, so their inputs are made contiguous first.
    ``separable_roi_align`` swaps mmcv's single-threaded RoIAlign for ``SeparableRoIAlign``.
    The result computes the same function, float rounding aside.

    ``compile=True`` also compiles the backbone (a bare backbone: all of it) with
    TorchInductor, weights frozen as constants: it pays off where per-op overhead dominates
    (small inputs), costs tens of seconds on the first call of each input shape, and needs
    a C++ compiler. Later changes to the weights are not seen by the compiled code.
    """
    fuse_model(model)  # idempotent
    if separable_roi_align:
        use_separable_roi_align(model)
    if channels_last:
        use_channels_last(model)
    if compile:
        target = model.backbone if isinstance(getattr(model, 'backbone', None),
                                              torch.nn.Module) else model
        target.compile(options={'freezing': True})
    return model
