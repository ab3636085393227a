from .hooks import CPUSpeedHook, ReparameterizeHook
from .nan_guard import NaNGuardHook, NonFiniteLossError
from .rank_sync import BroadcastBuffersHook
from .resume import RandomStateHook, find_resumable_checkpoint

__all__ = ['ReparameterizeHook', 'CPUSpeedHook', 'NaNGuardHook', 'NonFiniteLossError',
           'BroadcastBuffersHook', 'RandomStateHook', 'find_resumable_checkpoint']
