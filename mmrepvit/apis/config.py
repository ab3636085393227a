"""Loading a config and telling a detection config from a segmentation one."""
import os.path as osp

from mmengine.config import Config, DictAction  # noqa: F401  (DictAction for the CLIs)

TOOLBOXES = {'mmdet': 'detection', 'mmseg': 'segmentation'}


def load_config(path, cfg_options=None):
    if not osp.isfile(path):
        raise FileNotFoundError(f'Config file {path!r} does not exist')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    toolbox_of(cfg)
    return cfg


def toolbox_of(cfg):
    """'mmdet' or 'mmseg', from the config's ``default_scope``."""
    scope = cfg.get('default_scope')
    if scope not in TOOLBOXES:
        raise ValueError(f'Config default_scope={scope!r}: expected one of {list(TOOLBOXES)} '
                         f'(inherit from an mmdet:: or mmseg:: base config)')
    return scope


def default_work_dir(config_path):
    return osp.join('work_dirs', osp.splitext(osp.basename(config_path))[0])


def build_model(cfg):
    """Build ``cfg.model`` in its toolbox's registry (default scope set as the runner does)."""
    import importlib

    from mmengine.registry import init_default_scope
    scope = toolbox_of(cfg)
    init_default_scope(scope)
    return importlib.import_module(f'{scope}.registry').MODELS.build(cfg.model)

