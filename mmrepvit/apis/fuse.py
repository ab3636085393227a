"""What ``tools/fuse_checkpoint.py`` does."""
import os
import os.path as osp

import torch

from ..checkpoint import load_checkpoint_file
from ..deploy import fuse_state_dict
from .config import build_model, load_config


def fuse_checkpoint_file(config, checkpoint, out, cfg_options=None):
    """Fuse the trained ``checkpoint`` of ``config`` and save the deploy checkpoint to ``out``."""
    cfg = load_config(config, cfg_options)
    cfg.model.backbone.init_cfg = None
    model = build_model(cfg)
    fused = fuse_state_dict(model, load_checkpoint_file(checkpoint))
    if osp.dirname(out):
        os.makedirs(osp.dirname(out), exist_ok=True)
    torch.save(fused, out)
    return fused
