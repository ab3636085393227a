"""Stop training as soon as a loss stops being finite: its gradients have poisoned the weights
at that step, and every later iteration would train on garbage (and checkpoint it). The error
names the iteration and the last checkpoint written before it, the one to resume from.
"""
import math
import os.path as osp

import torch
from mmengine.dist import all_reduce, is_distributed
from mmengine.hooks import Hook

from ..registry import HOOKS
from .resume import last_checkpoint_of


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or inf."""


def _as_float(value):
    if isinstance(value, torch.Tensor):
        return value.detach().float().mean().item() if value.numel() else 0.0
    return float(value)


@HOOKS.register_module()
class NaNGuardHook(Hook):
    """Raise :class:`NonFiniteLossError` when a loss of a training iteration is NaN or inf;
    ``keys``: only outputs whose name contains it are checked ('loss': every ``loss_*`` and
    ``decode.loss_*``, not accuracies)."""
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
        if flag.item() == 0:
            return
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
