"""RepViT and MoCoViT backbones for MMDetection and MMSegmentation."""
from . import checkpoint, engine, models  # noqa: E402,F401  (modules register themselves)
from .integration import apply as _apply_integration  # noqa: E402
from .registry import MODELS  # noqa: E402
from .version import __version__

_apply_integration()  # what this import changes outside the package: see integration.py

__all__ = ['__version__', 'MODELS']
