"""Multi-process runs without CUDA through mmengine's CUDA-only ``pytorch``/``slurm``
launchers: a gloo group, DDP without device ids, BN for SyncBN (docs/reliability.md)."""
import atexit
import gc
import os
import subprocess

import torch
import torch.distributed as dist
from mmengine.logging import print_log

from ..utils.config_tree import replace_types

SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN', 'SyncBatchNorm')


def _slurm_env():
    """Fill torch's env:// variables from SLURM's, as mmengine's slurm launcher does."""
    proc_id = int(os.environ['SLURM_PROCID'])
    os.environ.setdefault('RANK', str(proc_id))
    os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
    os.environ.setdefault('LOCAL_RANK', os.environ.get('SLURM_LOCALID', '0'))
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        nodes = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.getoutput(
            f'scontrol show hostname {nodes} | head -n1')


def destroy_process_group() -> None:
    """Tear down the default process group while the interpreter is whole (a gloo worker left
    to finalisation aborts the finished rank: docs/reliability.md)."""
    if dist.is_initialized():
        dist.destroy_process_group()
        gc.collect()  # the group lives on in reference cycles (DDP's reducer) until collected


def setup_cpu_distributed(cfg):
    """Prepare ``cfg`` (launcher set) for a CPU-only multi-process run; no-op with CUDA or
    ``launcher='none'``."""
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch.cuda.is_available():
        return cfg
    if launcher not in ('pytorch', 'slurm'):
        raise ValueError(f'launcher={launcher!r} needs CUDA here; on CPU use "pytorch" '
                         f'(torchrun, tools/dist_train.sh) or "slurm"')
    if launcher == 'slurm':
        _slurm_env()
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
        atexit.register(destroy_process_group)
    cfg.model_wrapper_cfg = dict(cfg.get('model_wrapper_cfg') or
                                 dict(type='MMDistributedDataParallel'), device_ids=None)
    if replace_types(cfg.model, dict.fromkeys(SYNC_BN_TYPES, 'BN')):
        print_log('CPU multi-process run: SyncBN replaced by BN (SyncBatchNorm needs CUDA)',
                  logger='current')
    return cfg
