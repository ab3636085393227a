"""Everything ``import mmrepvit`` changes outside the package, in one place (README lists it).

1. Checks the installed mmcv / mmdet / mmseg versions (raises; changes nothing).
2. Registers our models and hooks into mmdet's and mmseg's registries, so that an unscoped
   ``type='RepViT'`` builds under their default scopes.
3. Process-wide, opt-out: allow-lists for ``torch.load(weights_only=True)`` the few objects that
   mmengine's own checkpoints pickle (``checkpoint/safe_load.py`` names them), so that
   ``runner.resume()`` works on torch >= 2.6 without turning the check off.
4. Process-wide, opt-out: routes mmengine's local-file checkpoint loading through
   ``load_checkpoint_file`` (weights-only, with errors that name the file and what is wrong).
5. Process-wide, opt-out: lets configs name ours as ``mmrepvit::<folder>/<file>.py``
   (``_mmrepvit_config_scope``; installed packages also do this at start-up, see there).

``MMREPVIT_PROCESS_WIDE=0`` in the environment skips 3-5.
"""
import os

import _mmrepvit_config_scope

from .checkpoint.safe_load import register_safe_checkpoint_loader, register_safe_globals
from .registry import register_into_toolboxes
from .utils.compat import check_versions

PROCESS_WIDE_ENV = 'MMREPVIT_PROCESS_WIDE'


def process_wide_enabled() -> bool:
    return os.environ.get(PROCESS_WIDE_ENV, '1') != '0'


def apply() -> None:
    """Apply 1-5 above (idempotent)."""
    check_versions()
    register_into_toolboxes()
    if not process_wide_enabled():
        return

    register_safe_globals()
    register_safe_checkpoint_loader()
    _mmrepvit_config_scope.add_scope()
