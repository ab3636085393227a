"""What ``tools/fuse_checkpoint.py`` does."""
import os
import os.path as osp
from typing import Optional, Union

import torch

from ..checkpoint import load_model_checkpoint
from ..config import build_model, load_config
from ..fusion import fuse_checkpoint


def fuse_checkpoint_file(config: str, checkpoint: Union[str, dict], out: str,
                         cfg_options: Optional[dict] = None) -> dict:
    """Fuse the backbone of ``checkpoint`` (a path or a loaded checkpoint of ``config``, loaded
    strictly), save it to ``out`` (it loads with ``config`` itself) and return it."""
    cfg = load_config(config, cfg_options)
    cfg.model.backbone.init_cfg = None
    model = build_model(cfg)
    fused = fuse_checkpoint(model, load_model_checkpoint(model, checkpoint),
                            cfg_text=cfg.pretty_text)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    torch.save(fused, out)
    return fused
