"""Loading a config (a file, or the config text a checkpoint carries, read as data) and telling
a detection config from a segmentation one."""
import ast
import importlib
import os.path as osp
from typing import Optional

import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import init_default_scope

from .registry import TOOLBOXES

# installed with the package, as mmdet / mmseg install theirs (a link to configs/ in a checkout)
CONFIGS_DIR = osp.join(osp.dirname(osp.abspath(__file__)), '.mim', 'configs')


def config_path(name: str) -> str:
    """The path of one of this project's configs, e.g. ``'demo/fpn_repvit_m1_1_demo.py'``."""
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


class ConfigTextError(ValueError):
    """Config text (e.g. a checkpoint's ``meta['cfg']``) that is not plain data: reading it
    would mean running it as Python."""


# what a config written as data holds, e.g. mmengine's ``Config.pretty_text``
CONFIG_DATA = ('assignments `name = value` of literals (strings, numbers, True, False, None, '
               'negative numbers), lists, tuples, {...} dicts and dict(key=value, ...), nested')


class _NotData(Exception):
    """Its argument, a node of the config text, is not plain data."""


def _config_value(node: ast.AST):
    """The value ``node`` spells, if it is plain data; else ``_NotData(node)``."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
            and isinstance(node.operand, ast.Constant) \
            and type(node.operand.value) in (int, float, complex):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_config_value(item) for item in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict) and None not in node.keys:  # (a None key: ``**other``)
        return {_config_value(k): _config_value(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id == 'dict' and not node.args \
            and all(k.arg is not None for k in node.keywords):
        return {k.arg: _config_value(k.value) for k in node.keywords}
    raise _NotData(node)


def _short(code: str) -> str:
    code = ' '.join(code.split())
    return code if len(code) <= 120 else code[:117] + '...'


def config_from_text(text: str, source: str, remedy: str, trust: bool = False) -> Config:
    """The config in ``text`` (e.g. a checkpoint's ``meta['cfg']``) read as data, never run;
    anything else is a :class:`ConfigTextError` naming ``source``, the line and ``remedy``.
    ``trust``: run it as Python (``Config.fromstring``), as mmengine does."""
    if trust:
        return Config.fromstring(text, file_format='.py')
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise ConfigTextError(f'{source}, line {e.lineno}: not a config written as Python '
                              f'({e.msg}): `{_short(e.text or "")}`. {remedy}') from None
    cfg = {}
    try:
        for statement in tree.body:
            if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                    and isinstance(statement.targets[0], ast.Name)
                    and statement.targets[0].id != '_base_'):
                raise _NotData(statement)
            cfg[statement.targets[0].id] = _config_value(statement.value)
    except _NotData as e:
        node = e.args[0]
        line = _short(text.splitlines()[node.lineno - 1])
        snippet = _short(ast.get_source_segment(text, node) or '')
        what = 'it' if snippet == line else f'`{snippet}`'
        raise ConfigTextError(
            f'{source}, line {node.lineno}: `{line}`: {what} is not plain data, so it is not '
            f'read: a config read from a checkpoint may only hold {CONFIG_DATA}, since running '
            f'it as Python would run whatever code it holds. {remedy}') from None
    return Config(cfg)


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


def default_dataset_meta(cfg: Config) -> Optional[dict]:
    """The classes / palette of the config's test dataset, else its dataset class's."""
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader') or {}
    dataset = dict(loader.get('dataset') or {})
    while 'dataset' in dataset and 'metainfo' not in dataset:  # wrappers (RepeatDataset...)
        dataset = dict(dataset['dataset'])
    meta = dict(dataset.get('metainfo') or {})
    try:
        cls = importlib.import_module(f'{cfg.default_scope}.registry').DATASETS.get(
            dataset.get('type'))
        defaults = dict(getattr(cls, 'METAINFO', {}) or {})
    except Exception:  # an unknown dataset type: the config's own metainfo only
        defaults = {}
    return {**defaults, **meta} or None
