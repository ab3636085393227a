"""What ``tools/train.py`` does, as functions tests can call."""
import os.path as osp

import torch
from mmengine.runner import Runner

from ..datasets import check_dataset_paths
from ..engine.distributed import setup_cpu_distributed
from .config import default_work_dir, load_config


def prepare_train_cfg(config, work_dir=None, resume=None, amp=False, auto_scale_lr=False,
                      cfg_options=None, launcher='none'):
    """The config of a training run, with mmdet's ``tools/train.py`` flags applied.

    ``resume``: None (start fresh), 'auto' (latest checkpoint in the work dir) or a path.
    """
    cfg = load_config(config, cfg_options)
    cfg.launcher = launcher
    cfg.work_dir = work_dir or cfg.get('work_dir') or default_work_dir(config)
    if amp:
        if not torch.cuda.is_available():
            raise RuntimeError('--amp needs a CUDA device (mmengine AmpOptimWrapper); '
                               'none is available here')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise KeyError(f'{config} has no auto_scale_lr.base_batch_size to scale from')
        cfg.auto_scale_lr.enable = True
    if resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif resume:
        if not osp.isfile(resume):
            raise FileNotFoundError(f'--resume {resume!r}: no such checkpoint')
        cfg.resume, cfg.load_from = True, resume
    return cfg


def build_runner(cfg):
    setup_cpu_distributed(cfg)
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def train(cfg):
    """Check the data is there, build the runner, train; returns the runner."""
    check_dataset_paths(cfg, splits=('train', 'val'))
    runner = build_runner(cfg)
    runner.train()
    return runner
