"""Lets any config inherit this project's configs as ``mmrepvit::<folder>/<file>.py``.

mmengine resolves ``package::path`` only for the packages in its ``MODULE2PACKAGE`` table, and
reads it while parsing a config's ``_base_``: before the config's ``custom_imports`` run, so
``import mmrepvit`` comes too late in mmdet's / mmseg's own tools. A one-line ``.pth`` file
installed with the package imports this module at interpreter start. It adds ``'mmrepvit'`` to
that table the moment ``mmengine.config.utils`` is first imported, and does nothing else (a
process that never imports mmengine is untouched). Opt out with ``MMREPVIT_CONFIG_SCOPE=0``.
"""
import os
import sys

TARGET = 'mmengine.config.utils'


def add_scope(module=None):
    module = module or sys.modules.get(TARGET)
    if module is not None:
        module.MODULE2PACKAGE.setdefault('mmrepvit', 'mmrepvit')


class AddScopeAfterImport:
    """Meta-path finder that lets ``mmengine.config.utils`` load as usual, then adds us."""

    def find_spec(self, name, path=None, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)  # once; and the finders below do the finding
        for finder in sys.meta_path:
            spec = getattr(finder, 'find_spec', lambda *a: None)(name, path, target)
            if spec is not None and spec.loader is not None:
                def exec_then_add_scope(module, exec_module=spec.loader.exec_module):
                    exec_module(module)
                    add_scope(module)

                spec.loader.exec_module = exec_then_add_scope
                return spec
        return None


def install():
    if os.environ.get('MMREPVIT_CONFIG_SCOPE', '1') == '0':
        return
    if TARGET in sys.modules:
        add_scope()
    elif not any(isinstance(f, AddScopeAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, AddScopeAfterImport())


install()
