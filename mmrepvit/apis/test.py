"""What ``tools/test.py`` does, as functions tests can call."""
from typing import Optional

import numpy as np
from mmengine.config import Config

from ..checkpoint import load_checkpoint_file, load_model_checkpoint, resolve_checkpoint_path
from ..config import default_work_dir, load_config, toolbox_of
from ..datasets import check_dataset_annotations, check_dataset_paths, use_readable_loaders
from ..deployment import check_model_file, is_deployed_file, open_model
from ..deployment.executorch_runtime import feed_original_images
from ..deployment.runtime import runs_app_programs
from .diagnose import explained_errors
from .train import add_hooks, build_runner


def prepare_test_cfg(config: str, checkpoint: str, work_dir: Optional[str] = None,
                     out: Optional[str] = None, show_dir: Optional[str] = None,
                     fuse: bool = False, cfg_options: Optional[dict] = None,
                     launcher: str = 'none') -> Config:
    """The config of a test run of ``checkpoint`` (plain, fused, an http(s) URL, or an exported
    model: ``.onnx``, ``.xml``, ``.pte``); ``fuse`` fuses the whole model after loading. The
    checkpoint is read by ``test``, once (``load_from`` stays empty)."""
    checkpoint = resolve_checkpoint_path(checkpoint)
    if fuse:
        check_model_file(checkpoint, fuse=fuse)
    cfg = load_config(config, cfg_options)
    toolbox = toolbox_of(cfg)
    cfg.launcher = launcher
    cfg.work_dir = work_dir or cfg.get('work_dir') or default_work_dir(config)
    cfg.load_from = None
    cfg.test_checkpoint = checkpoint
    if cfg.model.get('backbone', {}).get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None  # every weight comes from the checkpoint
    if fuse:
        add_hooks(cfg, ['mmrepvit.FuseModelHook'])
    if out:
        if toolbox == 'mmdet':
            if not out.endswith(('.pkl', '.pickle')):
                raise ValueError(f'--out {out!r}: a detection result file must be .pkl')
            cfg.test_evaluator = [cfg.test_evaluator] if isinstance(
                cfg.test_evaluator, dict) else list(cfg.test_evaluator)
            cfg.test_evaluator.append(dict(type='DumpDetResults', out_file_path=out))
        else:
            cfg.test_evaluator.output_dir = out
            cfg.test_evaluator.keep_results = True
    use_readable_loaders(cfg, toolbox)
    if show_dir:
        hook = cfg.default_hooks.visualization
        hook.draw = True
        if toolbox == 'mmdet':
            hook.test_out_dir = show_dir
        else:
            hook.interval = 1
            cfg.visualizer.save_dir = show_dir
    return cfg


def test(cfg: Config, checkpoint: Optional[dict] = None, runtime: Optional[str] = None,
         precision: Optional[str] = None) -> dict:
    """Check the data, read ``cfg.test_checkpoint`` (unless given loaded as ``checkpoint``) or
    open the exported model in ``runtime`` and ``precision``, build the runner, load the
    checkpoint strictly (the runner would only warn), test; returns the metrics as Python
    numbers."""
    path = cfg.get('test_checkpoint') or cfg.get('load_from')
    deployed = path is not None and check_model_file(path, runtime, precision)
    if runs_app_programs(runtime):  # an app program resizes the original image itself
        feed_original_images(cfg)
    check_dataset_paths(cfg, splits=('test', ))
    check_dataset_annotations(cfg, splits=('test', ))
    model = None
    if deployed:  # a file that is not a model of this config: said first
        # the metrics need only the predicted classes: no full-size logit maps
        model = open_model(cfg, path, runtime, precision, seg_logits=False)
    elif checkpoint is None:  # truncated, corrupted or unsafe: said first
        checkpoint = load_checkpoint_file(path)
    cfg.load_from = None
    with explained_errors(cfg):
        runner = build_runner(cfg)
        if model is not None:
            model.dataset_meta = runner.test_dataloader.dataset.metainfo
            runner.model = model
        else:
            load_model_checkpoint(runner.model, checkpoint, source=f'checkpoint {path!r}')
        return python_numbers(runner.test())


def python_numbers(metrics: dict) -> dict:
    """``metrics`` with numpy scalars as Python numbers: under numpy 2 mmseg's IoUMetric gives
    ``np.float32``, which ``json`` cannot write."""
    return {key: value.item() if isinstance(value, np.generic) else value
            for key, value in metrics.items()}


def evaluate_path(config: str, weights: str, runtime: Optional[str] = None,
              precision: Optional[str] = None, fast: bool = False,
              work_dir: Optional[str] = None, cfg_options: Optional[dict] = None) -> dict:
    """The metrics of one way of running ``config`` on its test set (``tools/test.py``'s loop):
    a checkpoint fused (``fast``: also ``CPUSpeedHook`` with channels-last), or an exported
    model in ``runtime`` and ``precision``; what ``tools/which_path.py`` measures with."""
    deployed = is_deployed_file(weights)
    if fast and deployed:
        raise ValueError(f'fast=True is the PyTorch CPU fast path, but {weights!r} is an '
                         f'exported model: give a checkpoint')
    cfg = prepare_test_cfg(config, weights, work_dir=work_dir, fuse=not deployed,
                           cfg_options=cfg_options)
    # no dataloader workers: forked from a process running runtime thread pools, they crashed
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.persistent_workers = False
    if fast:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='mmrepvit.CPUSpeedHook', channels_last=True)]
    return test(cfg, runtime=runtime, precision=precision)
