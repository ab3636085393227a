"""RepViT and MoCoViT backbones for MMDetection and MMSegmentation."""
from . import engine, models  # noqa: E402,F401  (modules register themselves)
from .process_wide import apply as _apply_process_wide  # noqa: E402
from .registry import MODELS  # noqa: E402
from .version import __version__

_apply_process_wide()  # what this import changes outside the package: see process_wide.py

__all__ = ['__version__', 'MODELS']
