"""mmengine reading local and http(s) checkpoints (``resume``, ``load_from``, ``Pretrained``
init of other modules) through :func:`load_checkpoint_file`: ``weights_only=True``, and errors
that name the file when it is truncated, corrupted or unsafe. Registered process-wide by
``import mmrepvit`` through mmengine's public ``CheckpointLoader.register_scheme`` (opt-out:
``integration.py``)."""
import os.path as osp

from mmengine.runner.checkpoint import CheckpointLoader

from .safe_load import load_checkpoint_file


def _load_local_checkpoint(filename, map_location=None):
    return load_checkpoint_file(osp.expanduser(filename), map_location=map_location)


def register_safe_checkpoint_loader():
    """Route mmengine's local-file and http(s) checkpoint loading through
    ``load_checkpoint_file`` (a URL: downloaded once into the cache of ``download.py``, a
    folder per URL, not mmengine's own by file name; then read weights-only)."""
    CheckpointLoader.register_scheme(prefixes='', loader=_load_local_checkpoint, force=True)
    CheckpointLoader.register_scheme(prefixes=('http://', 'https://'),
                                     loader=_load_local_checkpoint, force=True)
