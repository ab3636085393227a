from .hooks import CPUSpeedHook, FuseModelHook
from .nan_guard import NaNGuardHook, NonFiniteLossError
from .rank_sync import BroadcastBuffersHook
from .resume import RandomStateHook, find_resumable_checkpoint
from .run_folder import RunFolderRunner, WorkDirBusyError, training_lock

__all__ = ['FuseModelHook', 'CPUSpeedHook', 'NaNGuardHook', 'NonFiniteLossError',
           'BroadcastBuffersHook', 'RandomStateHook', 'find_resumable_checkpoint',
           'RunFolderRunner', 'WorkDirBusyError', 'training_lock']
