"""Runner hooks."""
import math
import os.path as osp

import torch
from mmengine.dist import all_reduce, broadcast, get_world_size, is_distributed
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..cpu_fast_path import use_channels_last, use_separable_roi_align
from ..fusion import count_batchnorms, fuse_model
from ..registry import HOOKS
from .resume import last_checkpoint_of


@HOOKS.register_module()
class FuseModelHook(Hook):
    """Fuse the model once the checkpoint is loaded, before testing (``tools/test.py --fuse``)."""
    priority = 'VERY_HIGH'

    def before_test(self, runner):
        model = fuse_model(runner.model.module if is_model_wrapper(runner.model) else runner.model)
        runner.logger.info(f'Fused the model for testing; '
                           f'{count_batchnorms(model)} BatchNorm layers left')


@HOOKS.register_module()
class CPUSpeedHook(Hook):
    """On CPU, ``SeparableRoIAlign`` for mmcv's single-threaded RoIAlign and, optionally,
    channels-last convolutions: the same computation, faster (docs/speed.md)."""
    priority = 'VERY_HIGH'

    def __init__(self, separable_roi_align=True, channels_last=False):
        self.separable_roi_align, self.channels_last = separable_roi_align, channels_last

    def before_run(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if any(p.is_cuda for p in model.parameters()):
            return
        done = []
        if self.separable_roi_align:
            use_separable_roi_align(model)
            done.append('separable RoIAlign')
        if self.channels_last:
            use_channels_last(model)
            done.append('channels-last')
        runner.logger.info(f'CPUSpeedHook: {", ".join(done) or "nothing to do"}')


@HOOKS.register_module()
class BroadcastBuffersHook(Hook):
    """Give every rank rank 0's model buffers (the checkpoint's BatchNorm statistics) before
    each validation and after training (docs/reliability.md)."""
    priority = 'VERY_HIGH'

    def _sync(self, runner):
        if get_world_size() > 1:
            for buffer in runner.model.buffers():
                broadcast(buffer.data, src=0)

    before_val = after_train = _sync


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or inf."""


def _as_float(value):
    if isinstance(value, torch.Tensor):
        return value.detach().float().mean().item() if value.numel() else 0.0
    return float(value)


@HOOKS.register_module()
class NaNGuardHook(Hook):
    """Raise :class:`NonFiniteLossError`, naming the checkpoint to resume from, when a training
    loss (an output whose name contains ``keys``) is NaN or inf."""
    # before CheckpointHook and LoggerHook: a poisoned model is neither saved nor logged
    priority = 'ABOVE_NORMAL'

    def __init__(self, keys='loss'):
        self.keys = keys

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        items = outputs.items() if isinstance(outputs, dict) else ()
        bad = {name: _as_float(value) for name, value in items
               if self.keys in name and isinstance(value, (torch.Tensor, float, int))
               and not math.isfinite(_as_float(value))}
        flag = torch.tensor(float(bool(bad)))
        if is_distributed():  # every rank stops at the same iteration, none waits on the others
            all_reduce(flag, op='max')
        if flag.item():
            raise NonFiniteLossError(self._message(runner, bad))

    @staticmethod
    def _message(runner, bad):
        iteration = runner.iter + 1  # as the log counts: Iter(train) [iteration/max_iters]
        what = (', '.join(f'{name}={value}' for name, value in sorted(bad.items()))
                or 'on another rank')
        last = last_checkpoint_of(runner.work_dir)
        if last and osp.isfile(last):
            where = f'The last good checkpoint is {last!r}: resume from it with `--resume {last}`'
        else:
            where = f'No checkpoint had been saved in {runner.work_dir!r} yet: restart from scratch'
        return (f'Training stopped: the loss is not finite at iteration {iteration} ({what}); '
                f'this iteration has already updated the weights with non-finite gradients, so '
                f'training on would only train on garbage. {where} once the cause is fixed (e.g. '
                f'a lower learning rate, gradient clipping, or fp32 instead of AMP).')
