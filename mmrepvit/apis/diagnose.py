"""Build failures re-raised saying what in the config is wrong: for a misspelt ``type`` or
argument (which mmengine reports without the config key or the valid names) the key, the bad
value, close names and the valid ones; every other failure is left alone."""
import difflib
import inspect
import re
import traceback
from contextlib import contextmanager

import mmengine.registry as registries
from mmengine.registry import Registry
from torch.utils.data import DataLoader

from ..config import toolbox_of
from ..datasets import explain_empty_dataset
from ..errors import first_few
from ..utils.config_tree import walk_config

UNKNOWN_TYPE = re.compile(r'^(?P<name>\S+) is not in the (?P<scope>\S+?)::(?P<registry>.+?) '
                          r'registry')
UNEXPECTED_ARG = re.compile(r"(?P<func>[\w.<>]+)\(\) got an unexpected keyword argument "
                            r"'(?P<arg>\w+)'")
MAX_LISTED = 30


class UnknownTypeError(KeyError):
    """A config ``type`` names nothing registered."""

    def __str__(self):  # KeyError would print the repr of the message
        return str(self.args[0])


class UnexpectedArgumentError(TypeError):
    """A config dict passes an argument its class does not take."""


def _root_registries():
    return [r for r in vars(registries).values() if isinstance(r, Registry) and r.parent is None]


def _descendants(registry):
    yield registry
    for child in registry.children.values():
        yield from _descendants(child)


def _find_registry(name, scope):
    """The registry called ``name`` of scope ``scope`` (e.g. 'model', 'mmseg')."""
    root = next((r for r in _root_registries() if r.name == name), None)
    if root is None:  # (a Registry with no modules is falsy)
        return None
    return next((r for r in _descendants(root) if r.scope == scope), root)


def _candidates(registry):
    """(the names a ``type`` may take unscoped: the registry's and its parents'; the other
    scopes' names by scope)."""
    unscoped, root = set(registry.module_dict), registry
    while root.parent is not None:
        root = root.parent
        unscoped.update(root.module_dict)
    scoped = {}
    for other in _descendants(root):
        if other is not root and other.scope != registry.scope:
            scoped.setdefault(other.scope, set()).update(other.module_dict)
    return sorted(unscoped), scoped


def _close(word, choices, n=3):
    """Close matches, best first, the case-insensitive equal one first (RepVit -> RepViT)."""
    lowered = {}
    for c in choices:
        lowered.setdefault(c.lower(), c)
    exact = [lowered[word.lower()]] if word.lower() in lowered else []
    close = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=0.6)
    return list(dict.fromkeys(exact + [lowered[c] for c in close]))


def _suggestions(name, registry, n=3):
    unscoped, scoped = _candidates(registry)
    prefix, _, bare = name.rpartition('.')
    found = []
    if prefix in scoped:  # 'mmrepvit.RepVit': that scope's names first
        found += [f'{prefix}.{c}' for c in _close(bare, scoped[prefix])]
    found += _close(bare, unscoped)
    others = [f'{s}.{c}' for s, names in scoped.items() for c in names if c not in unscoped]
    found += _close(name, others)
    return list(dict.fromkeys(found))[:n], unscoped


def _unknown_type(name, registry, cfg):
    paths = [f'{p}.type' if p else 'type' for p, d in walk_config(cfg.to_dict())
             if d.get('type') == name] or ['(not found in the config; set by a default)']
    where = ', '.join(f'{p}={name!r}' for p in paths)
    what = f'{registry.scope}::{registry.name}'
    registry.import_from_location()
    close, names = _suggestions(name, registry)
    hint = (f'Did you mean {" or ".join(map(repr, close))}?' if close
            else f'Registered names: {first_few(names, MAX_LISTED)}.')
    return UnknownTypeError(
        f'Config error: {where} is not a registered {what} type. {hint} (A type of another '
        f'package needs custom_imports=dict(imports=[package]) and, unless it is registered '
        f'in {registry.scope}, its scope prefix, e.g. "mmrepvit.RepViT".)')


def _class_named(class_name, error):
    """The class whose constructor raised: from the building frame, else from any registry."""
    built = [frame.f_locals.get('obj_cls') for frame, _ in traceback.walk_tb(error.__traceback__)]
    built = [c for c in built if inspect.isclass(c) and c.__name__ == class_name]
    if built:
        return built[-1]
    if class_name == 'DataLoader':  # built by mmengine's Runner.build_dataloader, not a registry
        return DataLoader
    registered = [r.module_dict.get(class_name) for root in _root_registries()
                  for r in _descendants(root)]
    return next((c for c in registered if inspect.isclass(c)), None)


def _unexpected_argument(func, arg, error, cfg):
    class_name = func.split('.')[0]
    cls = _class_named(class_name, error)
    params = [p.name for p in (inspect.signature(cls.__init__).parameters.values() if cls else [])
              if p.name != 'self' and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    paths = [f'{p}.{arg}' if p else arg for p, d in walk_config(cfg.to_dict()) if arg in d]
    where = ', '.join(paths) or f'{arg!r} (not found in the config)'
    close = _close(arg, params)
    hint = f' Did you mean {" or ".join(map(repr, close))}?' if close else ''
    valid = f' {class_name} takes: {", ".join(params)}.' if params else ''
    return UnexpectedArgumentError(
        f'Config error: {where}: {class_name} has no argument {arg!r}.{hint}{valid}')


def explain_config_error(error, cfg):
    """A clearer error for a misspelt type or argument of ``cfg``, or None."""
    message = str(error.args[0]) if error.args else ''
    if isinstance(error, KeyError):
        m = UNKNOWN_TYPE.match(message)
        if m:
            registry = _find_registry(m['registry'], m['scope'])
            if registry is not None:
                return _unknown_type(m['name'], registry, cfg)
    if isinstance(error, TypeError):
        m = UNEXPECTED_ARG.search(message)
        if m:
            return _unexpected_argument(m['func'], m['arg'], error, cfg)
        if 'None is not a callable object' in message:  # mmengine's optimizer constructor
            return _check_optimizer_type(cfg)
    return None


def _check_optimizer_type(cfg):
    name = ((cfg.get('optim_wrapper') or {}).get('optimizer') or {}).get('type')
    registry = _find_registry('optimizer', toolbox_of(cfg))
    if isinstance(name, str) and registry is not None and registry.get(name) is None:
        return _unknown_type(name, registry, cfg)
    return None


@contextmanager
def explained_errors(cfg):
    """Re-raise config and empty-dataset failures with a message saying what to fix."""
    try:
        yield
    except Exception as error:
        try:
            better = explain_config_error(error, cfg) or explain_empty_dataset(error)
        except Exception:  # a diagnosis that fails must not hide the error it diagnoses
            better = None
        if better is None:
            raise
        raise better from error
