"""Reading checkpoints: RepViT's published layouts, ours, whole models strictly, and safe
(weights-only) loading. ``mmrepvit.integration`` allow-lists what mmengine's own checkpoints
need, so that ``runner.resume()`` reads them too."""
from ..errors import (
                      CheckpointError,
                      CheckpointFormatError,
                      CheckpointMismatchError,
                      UnsafeCheckpointError,
)
from .converter import convert_checkpoint
from .detection import LAYOUTS, detect_layout
from .layouts import convert_official, convert_timm, timm_depths
from .loading import (
                      BackboneWeights,
                      PretrainedBackbone,
                      extract_backbone_weights,
                      load_backbone_checkpoint,
                      load_backbone_weights,
)
from .model import load_model_checkpoint
from .safe_load import ALLOWED_GLOBAL_NAMES, load_checkpoint_file, register_safe_globals

__all__ = [
    'ALLOWED_GLOBAL_NAMES', 'load_checkpoint_file', 'register_safe_globals', 'CheckpointError',
    'CheckpointFormatError', 'CheckpointMismatchError', 'UnsafeCheckpointError',
    'convert_official', 'convert_timm', 'timm_depths', 'LAYOUTS', 'detect_layout',
    'BackboneWeights', 'extract_backbone_weights', 'load_backbone_checkpoint',
    'load_backbone_weights', 'convert_checkpoint', 'load_model_checkpoint',
    'PretrainedBackbone'
]
