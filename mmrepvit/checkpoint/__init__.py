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
from .layouts import Layout, convert_official, convert_timm, timm_depths
from .model_weights import load_model_checkpoint
from .safe_load import ALLOWED_GLOBAL_NAMES, load_checkpoint_file, resolve_checkpoint_path

__all__ = [
    'ALLOWED_GLOBAL_NAMES', 'BackboneWeights', 'CheckpointDownloadError', 'CheckpointError',
    'CheckpointFormatError', 'CheckpointMismatchError', 'Layout', 'UnsafeCheckpointError',
    'convert_official', 'convert_timm', 'extract_backbone_weights', 'load_backbone_checkpoint',
    'load_backbone_weights', 'load_checkpoint_file', 'load_model_checkpoint',
    'resolve_checkpoint_path', 'timm_depths'
]
