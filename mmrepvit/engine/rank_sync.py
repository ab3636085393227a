"""Give every rank rank 0's model buffers when training pauses or ends.

DDP copies rank 0's buffers to the others at the start of every forward, but the last forward
before a validation or the end updates each rank's BatchNorm statistics from its own batch;
rank 0's are the ones the checkpoint holds. With SyncBN they agree anyway; on CPU runs, where
SyncBN is replaced by BN, this hook is what makes the ranks agree.
"""
from mmengine.dist import broadcast, get_world_size
from mmengine.hooks import Hook

from ..registry import HOOKS


@HOOKS.register_module()
class BroadcastBuffersHook(Hook):
    """Broadcast rank 0's buffers before each validation and after training (no-op when not
    distributed)."""
    priority = 'VERY_HIGH'

    def _sync(self, runner):
        if get_world_size() > 1:
            for buffer in runner.model.buffers():
                broadcast(buffer.data, src=0)

    before_val = after_train = _sync
