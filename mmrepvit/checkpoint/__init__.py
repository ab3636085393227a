"""Reading checkpoints: RepViT's published layouts, ours, whole models strictly, and safe
(weights-only) loading. ``mmrepvit.integration`` allow-lists what mmengine's own checkpoints
need, so that ``runner.resume()`` reads them too."""
from ..errors import (
                      CheckpointDownloadError,
                      CheckpointError,
                      CheckpointFormatError,
                      CheckpointMismatchError,
                      UnsafeCheckpointError,
)
from ..models.backbones.published_layouts import convert_official, convert_timm, timm_depths
from .converter import convert_checkpoint, convert_model_checkpoint
from .detection import LAYOUTS, detect_layout
from .loading import (
                      BackboneWeights,
                      PretrainedBackbone,
                      extract_backbone_weights,
                      load_backbone_checkpoint,
                      load_backbone_weights,
)
from .model import load_model_checkpoint
from .safe_load import (
                        ALLOWED_GLOBAL_NAMES,
                        load_checkpoint_file,
                        register_safe_globals,
                        resolve_checkpoint_path,
)

__all__ = [
    'ALLOWED_GLOBAL_NAMES', 'load_checkpoint_file', 'register_safe_globals', 'CheckpointError',
    'CheckpointDownloadError', 'resolve_checkpoint_path',
    'CheckpointFormatError', 'CheckpointMismatchError', 'UnsafeCheckpointError',
    'convert_official', 'convert_timm', 'timm_depths', 'LAYOUTS', 'detect_layout',
    'BackboneWeights', 'extract_backbone_weights', 'load_backbone_checkpoint',
    'load_backbone_weights', 'convert_checkpoint', 'convert_model_checkpoint',
    'load_model_checkpoint',
    'PretrainedBackbone'
]
