"""What ``tools/test.py`` does, as functions tests can call."""
import os.path as osp
from typing import Optional

from mmengine.config import Config

from ..checkpoint import load_checkpoint_file, load_model_checkpoint
from ..config import default_work_dir, load_config, toolbox_of
from ..datasets import check_dataset_annotations, check_dataset_paths, use_readable_loaders
from ..deployment import build_onnx_model, check_deployed_options, check_onnx_file
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
    ``precision`` (``deployment.build_onnx_model``)."""
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'Checkpoint {checkpoint!r} does not exist')
    deployed = checkpoint.endswith('.onnx')
    check_deployed_options(checkpoint, deployed, runtime, precision)
    if deployed:
        check_onnx_file(checkpoint, fuse)
    else:
        load_checkpoint_file(checkpoint)  # truncated, corrupted or unsafe: say so first
    cfg = load_config(config, cfg_options)
    toolbox = toolbox_of(cfg)
    cfg.launcher = launcher
    cfg.work_dir = work_dir or cfg.get('work_dir') or default_work_dir(config)
    cfg.load_from = None if deployed else checkpoint
    cfg.deployed_model = checkpoint if deployed else None
    cfg.deployed_runtime, cfg.deployed_precision = runtime or 'onnxruntime', precision
    if cfg.model.get('backbone', {}).get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None  # every weight comes from the checkpoint
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


def test(cfg: Config) -> dict:
    """Check the data is there, build the runner, check the checkpoint fits the model
    strictly (the runner itself would only warn), test; returns the metrics dict."""
    check_dataset_paths(cfg, splits=('test', ))
    check_dataset_annotations(cfg, splits=('test', ))
    with explained_errors(cfg):
        runner = build_runner(cfg)
        if cfg.get('deployed_model'):
            # the metrics need only the predicted classes: no full-size logit maps
            runner.model = build_onnx_model(cfg, cfg.deployed_model,
                                            dataset_meta=runner.test_dataloader.dataset.metainfo,
                                            runtime=cfg.get('deployed_runtime', 'onnxruntime'),
                                            precision=cfg.get('deployed_precision'),
                                            seg_logits=False)
        else:
            load_model_checkpoint(runner.model, cfg.load_from)
        return runner.test()
