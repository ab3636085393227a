"""Give every rank rank 0's model buffers when training pauses or ends.

DDP (``broadcast_buffers=True``) copies rank 0's buffers to the other ranks at the start of
every forward, but the last forward before a validation, or before the end of training,
updates each rank's BatchNorm statistics from its own batch. Rank 0's are the ones the
checkpoint holds; without this hook the other ranks would validate (and end) with different
statistics. With SyncBN the statistics agree anyway and the broadcast changes nothing; on CPU
runs, where SyncBN is replaced by BN, it is what makes the ranks agree.
"""
import torch.distributed as torch_dist
from mmengine.dist import broadcast, is_distributed
from mmengine.hooks import Hook

from ..registry import HOOKS


def broadcast_buffers(module, src=0):
    """Copy every floating-point and integer buffer of ``module`` from rank ``src``."""
    for buffer in module.buffers():
        broadcast(buffer.data, src=src)


@HOOKS.register_module()
class BroadcastBuffersHook(Hook):
    """Broadcast rank 0's buffers before each validation and after training (no-op when not
    distributed)."""
    priority = 'VERY_HIGH'

    def _sync(self, runner):
        if is_distributed() and torch_dist.get_world_size() > 1:
            broadcast_buffers(runner.model)

    def before_val(self, runner):
        self._sync(runner)

    def after_train(self, runner):
        self._sync(runner)
