from .hooks import (
    BroadcastBuffersHook,
    CPUSpeedHook,
    FuseModelHook,
    NaNGuardHook,
    NonFiniteLossError,
)
from .resume import RandomStateHook, find_resumable_checkpoint
from .run_folder import RunFolderRunner, WorkDirBusyError, training_lock

__all__ = ['FuseModelHook', 'CPUSpeedHook', 'NaNGuardHook', 'NonFiniteLossError',
           'BroadcastBuffersHook', 'RandomStateHook', 'find_resumable_checkpoint',
           'RunFolderRunner', 'WorkDirBusyError', 'training_lock']
