"""The ``mmrepvit`` registry scope, and the bridge into mmdet's and mmseg's registries.

``type='mmrepvit.RepViT'`` resolves from any toolbox through this scope; for unscoped
``type='RepViT'`` under ``default_scope='mmdet'`` / ``'mmseg'`` (whose registries do not search
siblings) every model here is also registered into each installed toolbox.
"""
import importlib

import mmengine.registry as root  # mmengine's root registries
from mmengine.registry import Registry

MODELS = Registry('model', parent=root.MODELS, scope='mmrepvit', locations=['mmrepvit.models'])
HOOKS = Registry('hook', parent=root.HOOKS, scope='mmrepvit', locations=['mmrepvit.engine'])
# reached as 'mmrepvit.<name>' only: our transforms are drop-in subclasses of the toolboxes'
# own, so they are not bridged under their plain names (that would replace the originals)
TRANSFORMS = Registry('transform', parent=root.TRANSFORMS, scope='mmrepvit',
                      locations=['mmrepvit.datasets'])

TOOLBOXES = ('mmdet', 'mmseg')


def register_into_toolboxes():
    """Register our models into the MODELS registry of each installed toolbox (idempotent)."""
    registered = []
    for toolbox in TOOLBOXES:
        try:
            registries = importlib.import_module(f'{toolbox}.registry')
        except ImportError:
            continue
        for ours in (MODELS, HOOKS):
            target = getattr(registries, ours.name.upper() + 'S')
            for name, cls in ours.module_dict.items():
                if target.module_dict.get(name) is not cls:
                    target.register_module(name=name, module=cls, force=True)
        registered.append(toolbox)
    return registered
