"""What ``tools/test.py`` does, as functions tests can call."""
import os.path as osp

from ..checkpoint import load_checkpoint_file
from ..datasets import check_dataset_annotations, check_dataset_paths, use_readable_loaders
from ..deploy import deploy_model_cfg, is_deploy_checkpoint
from .config import default_work_dir, load_config, toolbox_of
from .diagnose import explained_errors
from .train import build_runner


def prepare_test_cfg(config, checkpoint, work_dir=None, out=None, show_dir=None, fuse=False,
                     cfg_options=None, launcher='none'):
    """The config of a test run. A deploy checkpoint (``tools/fuse_checkpoint.py``) switches
    the model to its fused structure; ``fuse`` fuses an ordinary checkpoint after loading."""
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'Checkpoint {checkpoint!r} does not exist')
    cfg = load_config(config, cfg_options)
    toolbox = toolbox_of(cfg)
    cfg.launcher = launcher
    cfg.work_dir = work_dir or cfg.get('work_dir') or default_work_dir(config)
    cfg.load_from = checkpoint
    if cfg.model.get('backbone', {}).get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None  # every weight comes from the checkpoint
    if is_deploy_checkpoint(load_checkpoint_file(checkpoint)):
        cfg.model = deploy_model_cfg(cfg.model)
    elif fuse:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='mmrepvit.ReparameterizeHook')]
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


def test(cfg):
    """Check the data is there, build the runner, test; returns the metrics dict."""
    check_dataset_paths(cfg, splits=('test', ))
    check_dataset_annotations(cfg, splits=('test', ))
    with explained_errors(cfg):
        runner = build_runner(cfg)
        return runner.test()
