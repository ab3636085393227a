"""What ``tools/train.py`` does, as functions tests can call."""
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..config import config_from_text, default_work_dir, load_config, toolbox_of
from ..datasets.checks import check_dataset_annotations, check_dataset_paths
from ..datasets.loading import check_dataset_files, use_readable_loaders
from ..engine.distributed import setup_cpu_distributed
from ..engine.resume import find_resumable_checkpoint
from ..engine.run_folder import RunFolderRunner, training_lock
from .diagnose import explained_errors

# Added to every training run (unless the config has them): exact resume, and ranks that agree
# on BatchNorm statistics when validating and at the end (no-ops in a single process).
TRAIN_HOOKS = ('mmrepvit.RandomStateHook', 'mmrepvit.BroadcastBuffersHook')


def prepare_train_cfg(config: str, work_dir: Optional[str] = None,
                      resume: Optional[str] = None, amp: bool = False,
                      auto_scale_lr: bool = False, cfg_options: Optional[dict] = None,
                      launcher: str = 'none') -> Config:
    """The config of a training run, with mmdet's ``tools/train.py`` flags applied;
    ``resume``: None (start fresh), 'auto' (latest checkpoint in the work dir) or a path."""
    cfg = load_config(config, cfg_options)
    check_train_length(cfg)
    cfg.launcher = launcher
    cfg.work_dir = work_dir or cfg.get('work_dir') or default_work_dir(config)
    if amp:
        if not torch.cuda.is_available():
            raise RuntimeError('--amp needs a CUDA device (mmengine AmpOptimWrapper); '
                               'none is available here')
        cfg.optim_wrapper.update(type='AmpOptimWrapper', loss_scale='dynamic')
    if auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise KeyError(f'{config} has no auto_scale_lr.base_batch_size to scale from')
        cfg.auto_scale_lr.enable = True
    if resume:
        if resume != 'auto' and not osp.isfile(resume):
            raise FileNotFoundError(f'--resume {resume!r}: no such checkpoint')
        # 'auto': the newest complete checkpoint (mmengine's may be a file a kill truncated)
        cfg.resume = True
        cfg.load_from = find_resumable_checkpoint(cfg.work_dir) if resume == 'auto' else resume
    add_hooks(cfg, TRAIN_HOOKS)
    use_readable_loaders(cfg, toolbox_of(cfg))
    return cfg


def check_train_length(cfg):
    """``max_iters`` / ``max_epochs`` below 1 (mmengine would train nothing and exit 0) is a
    config error naming the key and value."""
    train_cfg = cfg.get('train_cfg') or {}
    for key in ('max_iters', 'max_epochs'):
        value = train_cfg.get(key)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                  or value < 1):
            raise ValueError(f'Config error: train_cfg.{key}={value!r}: a training run needs '
                             f'{key} >= 1 (mmengine would train nothing and report success).')


def add_hooks(cfg, types):
    """Append ``custom_hooks`` of these types, unless the config already has them."""
    hooks = list(cfg.get('custom_hooks') or [])
    present = {str(h.get('type')).split('.')[-1] for h in hooks if isinstance(h, dict)}
    hooks += [dict(type=t) for t in types if t.split('.')[-1] not in present]
    cfg.custom_hooks = hooks


def build_runner(cfg: Config) -> Runner:
    """The config's runner: its own ``runner_type``, else mmengine's ``Runner`` with a log
    folder of its own per run (``RunFolderRunner``)."""
    setup_cpu_distributed(cfg)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return RunFolderRunner.from_cfg(cfg)


def train(cfg: Config) -> Runner:
    """Check the data, build the runner, train; returns the runner. Config and data errors say
    what to fix; a work dir another training run is writing into is refused."""
    check_dataset_paths(cfg, splits=('train', 'val'))
    check_dataset_annotations(cfg, splits=('train', 'val'))
    with explained_errors(cfg):
        runner = build_runner(cfg)  # ranks known from here on: rank 0 takes the lock
        with training_lock(runner.work_dir):
            if cfg.get('resume'):
                read_resumed_config_as_data(runner)
            datasets = {'train': runner.train_dataloader.dataset}
            if runner.val_loop is not None:
                datasets['val'] = runner.val_dataloader.dataset
            check_dataset_files(datasets)
            runner.train()
    return runner


def read_resumed_config_as_data(runner) -> None:
    """Have ``runner.resume`` refuse a checkpoint whose ``meta['config']`` is not plain data
    (mmengine runs it with ``Config.fromstring`` to read ``gpu_ids``): ``load_checkpoint``,
    which ``resume`` calls first, is wrapped to read that text as data first."""
    load_checkpoint = runner.load_checkpoint

    def load_checkpoint_reading_config_as_data(filename, *args, **kwargs):
        checkpoint = load_checkpoint(filename, *args, **kwargs)
        text = (checkpoint.get('meta') or {}).get('config')
        if text is not None:
            config_from_text(text, f'The config in checkpoint {filename!r} (meta["config"])',
                             'mmengine would run it as Python to resume. Resume from a '
                             'checkpoint without it, or remove meta["config"] from this one.')
        return checkpoint

    runner.load_checkpoint = load_checkpoint_reading_config_as_data
