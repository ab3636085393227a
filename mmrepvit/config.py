"""Loading a config and telling a detection config from a segmentation one."""
import importlib
import os.path as osp
from typing import Optional

import torch.nn as nn
from mmengine.config import Config, DictAction  # noqa: F401  (DictAction for the CLIs)
from mmengine.registry import init_default_scope

TOOLBOXES = {'mmdet': 'detection', 'mmseg': 'segmentation'}
# installed with the package, as mmdet / mmseg install theirs (a link to configs/ in a checkout)
CONFIGS_DIR = osp.join(osp.dirname(osp.abspath(__file__)), '.mim', 'configs')


def config_path(name: str) -> str:
    """The path of one of this project's configs, e.g. ``'demo/fpn_repvit_m1_1_demo.py'``,
    in a checkout or an installed package (what ``mmrepvit::<name>`` names in a config)."""
    path = osp.join(CONFIGS_DIR, name)
    if not osp.isfile(path):
        raise FileNotFoundError(f'mmrepvit has no config {name!r} (looked in {CONFIGS_DIR})')
    return path


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    if not osp.isfile(path):
        raise FileNotFoundError(f'Config file {path!r} does not exist')
    # mmengine reformats its own printout with yapf each time a runner logs, dumps or records
    # the config, several times per runner, and the text comes out the same
    cfg = Config.fromfile(path, format_python_code=False)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    toolbox_of(cfg)
    return cfg


def toolbox_of(cfg: Config) -> str:
    """'mmdet' or 'mmseg', from the config's ``default_scope``."""
    scope = cfg.get('default_scope')
    if scope not in TOOLBOXES:
        raise ValueError(f'Config default_scope={scope!r}: expected one of {list(TOOLBOXES)} '
                         f'(inherit from an mmdet:: or mmseg:: base config)')
    return scope


def default_work_dir(config_file: str) -> str:
    return osp.join('work_dirs', osp.splitext(osp.basename(config_file))[0])


def build_model(cfg: Config) -> nn.Module:
    """Build ``cfg.model`` in its toolbox's registry (default scope set as the runner does)."""

    scope = toolbox_of(cfg)
    init_default_scope(scope)
    return importlib.import_module(f'{scope}.registry').MODELS.build(cfg.model)
