"""What ``tools/test.py`` does, as functions tests can call."""
from typing import Optional

import numpy as np
from mmengine.config import Config

from ..checkpoint import load_checkpoint_file, load_model_checkpoint, resolve_checkpoint_path
from ..config import default_work_dir, load_config, toolbox_of
from ..datasets import check_dataset_annotations, check_dataset_paths, use_readable_loaders
from ..deployment import (
    build_onnx_model,
    check_deployed_options,
    check_onnx_file,
    is_deployed_file,
)
from ..deployment.executorch_runtime import feed_original_images
from .diagnose import explained_errors
from .train import build_runner


def prepare_test_cfg(config: str, checkpoint: str, work_dir: Optional[str] = None,
                     out: Optional[str] = None, show_dir: Optional[str] = None,
                     fuse: bool = False, cfg_options: Optional[dict] = None,
                     launcher: str = 'none', runtime: Optional[str] = None,
                     precision: Optional[str] = None) -> Config:
    """The config of a test run. A fused checkpoint (``tools/fuse_checkpoint.py``) needs
    nothing special (the backbone takes the form of the weights); ``fuse`` fuses the whole
    model after loading, head norms included. ``checkpoint`` may also be an ``.onnx`` file
    exported from ``config`` (``tools/export_onnx.py``, float or int8): the deployed model is
    then what gets tested, in ``runtime`` (default ONNX Runtime; or OpenVINO) and
    ``precision`` (``deployment.build_onnx_model``); or an ExecuTorch app program (``.pte``,
    ``tools/export_executorch.py``) with ``runtime='executorch'``, fed the original images.

    The checkpoint is not read here: ``test`` reads it once, before building anything, and
    loads it strictly; ``load_from`` stays empty so that the runner does not read it again.
    An http(s) URL is downloaded once into the checkpoint cache (``resolve_checkpoint_path``)."""
    checkpoint = resolve_checkpoint_path(checkpoint)
    deployed = is_deployed_file(checkpoint)
    check_deployed_options(checkpoint, deployed, runtime, precision)
    if deployed:
        check_onnx_file(checkpoint, fuse, runtime)
    cfg = load_config(config, cfg_options)
    toolbox = toolbox_of(cfg)
    cfg.launcher = launcher
    cfg.work_dir = work_dir or cfg.get('work_dir') or default_work_dir(config)
    cfg.load_from = None
    cfg.test_checkpoint = None if deployed else checkpoint
    cfg.deployed_model = checkpoint if deployed else None
    cfg.deployed_runtime, cfg.deployed_precision = runtime or 'onnxruntime', precision
    if cfg.model.get('backbone', {}).get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None  # every weight comes from the checkpoint
    if runtime == 'executorch':  # an app program resizes the original image itself
        feed_original_images(cfg)
    if fuse:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='mmrepvit.FuseModelHook')]
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


def test(cfg: Config, checkpoint: Optional[dict] = None) -> dict:
    """Check the data is there, read the checkpoint (``cfg.test_checkpoint``) or open the
    exported model (``cfg.deployed_model``), build the runner, load the checkpoint strictly
    (the runner itself would only warn), test; returns the metrics dict, its numbers Python
    numbers (``python_numbers``). ``checkpoint``: the already loaded checkpoint, which is then
    not read again."""
    check_dataset_paths(cfg, splits=('test', ))
    check_dataset_annotations(cfg, splits=('test', ))
    path = cfg.get('test_checkpoint') or cfg.get('load_from')
    deployed = None
    if cfg.get('deployed_model'):  # a file that is not a model of this config: said first
        # the metrics need only the predicted classes: no full-size logit maps
        deployed = build_onnx_model(cfg, cfg.deployed_model,
                                    runtime=cfg.get('deployed_runtime', 'onnxruntime'),
                                    precision=cfg.get('deployed_precision'), seg_logits=False)
    elif checkpoint is None:  # truncated, corrupted or unsafe: said first
        checkpoint = load_checkpoint_file(path)
    cfg.load_from = None
    with explained_errors(cfg):
        runner = build_runner(cfg)
        if deployed is not None:
            deployed.dataset_meta = runner.test_dataloader.dataset.metainfo
            runner.model = deployed
        else:
            load_model_checkpoint(runner.model, checkpoint, source=f'checkpoint {path!r}')
        return python_numbers(runner.test())


def python_numbers(metrics: dict) -> dict:
    """``metrics`` with its numpy scalars as Python numbers. Under numpy 2, mmseg's IoUMetric
    returns ``np.float32`` (numpy 1 promoted its arithmetic to ``np.float64``, a ``float``),
    which ``json`` cannot write; the demo, ``tools/which_path.py`` and the tests report,
    compare and save these values."""
    return {key: value.item() if isinstance(value, np.generic) else value
            for key, value in metrics.items()}


def evaluate_path(config: str, weights: str, runtime: Optional[str] = None,
              precision: Optional[str] = None, fast: bool = False,
              work_dir: Optional[str] = None, cfg_options: Optional[dict] = None) -> dict:
    """The metrics of one way of running ``config`` on its test set, through ``tools/test.py``'s
    loop: a checkpoint fused for the test (``fast``: also the CPU fast path,
    ``CPUSpeedHook`` with channels-last), or an exported ``.onnx`` in ``runtime`` and
    ``precision``. What ``tools/which_path.py`` measures each path's accuracy with.

    The test set is read in this process (no dataloader workers): by now the runtimes'
    thread pools (OpenMP, OpenVINO's TBB) are running here, and workers forked from such a
    process crashed (a futex error, a segmentation fault)."""
    deployed = is_deployed_file(weights)
    if fast and deployed:
        raise ValueError(f'fast=True is the PyTorch CPU fast path, but {weights!r} is an '
                         f'exported model: give a checkpoint')
    cfg = prepare_test_cfg(config, weights, work_dir=work_dir, fuse=not deployed,
                           cfg_options=cfg_options, runtime=runtime if deployed else None,
                           precision=precision if deployed else None)
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.persistent_workers = False
    if fast:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='mmrepvit.CPUSpeedHook', channels_last=True)]
    return test(cfg)
