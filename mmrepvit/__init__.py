"""RepViT and MoCoViT backbones for MMDetection and MMSegmentation."""
from .version import __version__
from .utils.compat import check_versions

check_versions()

# models and hooks register themselves; checkpoint allow-lists what mmengine's own checkpoints
# need under torch.load(weights_only=True), so resume works in any toolbox's train.py
from . import checkpoint, engine, models  # noqa: E402,F401
from .registry import MODELS, register_into_toolboxes  # noqa: E402

register_into_toolboxes()

__all__ = ['__version__', 'MODELS']
