"""Checkpoints: reading a file (``safe_load``: weights-only, for mmengine's loads too), which
layout its weights are in and their renaming (``layouts``), loading them into a backbone
(``backbone_weights``) or a whole model (``model_weights``), all or nothing."""
from ..errors import (
                      CheckpointDownloadError,
                      CheckpointError,
                      CheckpointFormatError,
                      CheckpointMismatchError,
                      UnsafeCheckpointError,
)
from .backbone_weights import (
                               BackboneWeights,
                               extract_backbone_weights,
                               load_backbone_checkpoint,
                               load_backbone_weights,
)
from .layouts import OWN_LAYOUTS, PUBLISHED, Layout, convert_official, convert_timm, timm_depths
from .model_weights import load_model_checkpoint
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
    'convert_official', 'convert_timm', 'timm_depths', 'Layout', 'OWN_LAYOUTS', 'PUBLISHED',
    'BackboneWeights', 'extract_backbone_weights', 'load_backbone_checkpoint',
    'load_backbone_weights', 'load_model_checkpoint'
]
