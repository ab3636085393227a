"""Everything ``import mmrepvit`` changes outside the package, in one place (docs/installation.md
lists it): 1. checks mmcv / mmdet / mmseg versions; 2. registers our models and hooks into mmdet's
and mmseg's registries; unless ``MMREPVIT_PROCESS_WIDE=0``, process-wide: 3. allow-lists for
``torch.load(weights_only=True)`` what mmengine's checkpoints pickle (``checkpoint/safe_load.py``),
4. routes mmengine's checkpoint loading through ``load_checkpoint_file``, 5. lets configs name
ours as ``mmrepvit::<folder>/<file>.py`` (``_mmrepvit_config_scope``).
"""
import os

import _mmrepvit_config_scope

from .checkpoint.safe_load import register_safe_checkpoint_loader, register_safe_globals
from .registry import register_into_toolboxes
from .utils.compat import check_versions

PROCESS_WIDE_ENV = 'MMREPVIT_PROCESS_WIDE'


def apply() -> None:
    """Apply 1-5 above (idempotent)."""
    check_versions()
    register_into_toolboxes()
    if os.environ.get(PROCESS_WIDE_ENV, '1') == '0':
        return
    register_safe_globals()
    register_safe_checkpoint_loader()
    _mmrepvit_config_scope.add_scope()
