"""RepViT and MoCoViT backbones for MMDetection and MMSegmentation."""
from .version import __version__
from .utils.compat import check_versions

check_versions()

from . import engine, models  # noqa: E402,F401  (registers backbones and hooks)
from .registry import MODELS, register_into_toolboxes  # noqa: E402

register_into_toolboxes()

__all__ = ['__version__', 'MODELS']
