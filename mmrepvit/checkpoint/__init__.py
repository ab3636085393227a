"""Reading RepViT checkpoints: the published layouts, ours, and safe (weights-only) loading.

Importing this package allow-lists the few objects mmengine Runner checkpoints pickle, so that
``torch.load(weights_only=True)`` -- and with it ``runner.resume()`` -- reads them.
"""
from .safe_load import (  # noqa: I001  (first: registers the allow-list)
    ALLOWED_GLOBAL_NAMES, load_checkpoint_file, register_safe_globals)
from .errors import (CheckpointError, CheckpointFormatError, CheckpointMismatchError,
                     UnsafeCheckpointError)
from .layouts import convert_official, convert_timm, timm_depths
from .detection import LAYOUTS, detect_layout
from .loading import (BackboneWeights, extract_backbone_weights, load_backbone_checkpoint,
                      load_backbone_weights)
from .converter import convert_checkpoint

__all__ = [
    'ALLOWED_GLOBAL_NAMES', 'load_checkpoint_file', 'register_safe_globals', 'CheckpointError',
    'CheckpointFormatError', 'CheckpointMismatchError', 'UnsafeCheckpointError',
    'convert_official', 'convert_timm', 'timm_depths', 'LAYOUTS', 'detect_layout',
    'BackboneWeights', 'extract_backbone_weights', 'load_backbone_checkpoint',
    'load_backbone_weights', 'convert_checkpoint'
]
