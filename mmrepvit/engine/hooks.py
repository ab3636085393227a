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
    """Fuse the model (backbone blocks and every Conv-BN pair) once the checkpoint is loaded,
    before testing: what ``tools/test.py --fuse`` uses to evaluate the fused model."""
    priority = 'VERY_HIGH'

    def before_test(self, runner):
        model = fuse_model(runner.model.module if is_model_wrapper(runner.model) else runner.model)
        runner.logger.info(f'Fused the model for testing; '
                           f'{count_batchnorms(model)} BatchNorm layers left')


@HOOKS.register_module()
class CPUSpeedHook(Hook):
    """Train and test a model on CPU faster without changing what it computes (float rounding
    aside): ``SeparableRoIAlign`` in place of mmcv's single-threaded RoIAlign and, optionally,
    channels-last convolutions (docs/speed.md measures both). A model on a GPU is left as it
    is."""
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
    """Give every rank rank 0's model buffers before each validation and after training.

    DDP copies rank 0's buffers to the others at the start of every forward, but the last one
    before a validation or the end updates each rank's BatchNorm statistics from its own batch;
    rank 0's are those the checkpoint holds. With SyncBN they agree anyway; on CPU runs, where
    SyncBN is replaced by BN, this hook makes the ranks agree.
    """
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
    """Raise :class:`NonFiniteLossError` when a loss of a training iteration is NaN or inf: its
    gradients have poisoned the weights at that step, and every later iteration would train on
    garbage (and checkpoint it). The error names the iteration and the last checkpoint written
    before it, the one to resume from. ``keys``: only outputs whose name contains it are checked
    ('loss': every ``loss_*`` and ``decode.loss_*``, not accuracies)."""
    # before CheckpointHook (VERY_LOW) and LoggerHook (BELOW_NORMAL): a poisoned model is
    # neither saved nor logged as a normal iteration
    priority = 'ABOVE_NORMAL'

    def __init__(self, keys='loss'):
        self.keys = keys

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        bad = {name: value for name, value in self._losses(outputs).items()
               if not math.isfinite(value)}
        flag = torch.tensor(float(bool(bad)))
        if is_distributed():  # every rank stops at the same iteration, none waits on the others
            all_reduce(flag, op='max')
        if flag.item():
            raise NonFiniteLossError(self._message(runner, bad))

    def _losses(self, outputs):
        if not isinstance(outputs, dict):
            return {}
        return {name: _as_float(value) for name, value in outputs.items()
                if self.keys in name and isinstance(value, (torch.Tensor, float, int))}

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
