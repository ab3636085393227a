"""Checkpoints named by URL: downloaded once into the cache that mmengine's http loading uses
(torch hub's, ``$TORCH_HOME/hub/checkpoints``), then read from there like any local file.

``MMREPVIT_RELEASE_MIRROR`` points the original release's URLs at a mirror: a local folder or
another server holding the release files under the same names (for machines behind a
firewall, and for tests).
"""
import http.client
import os
import os.path as osp
from urllib.parse import urlparse

import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.logging import print_log

from ..errors import CheckpointDownloadError

RELEASE_URL = 'https://github.com/THU-MIG/RepViT/releases/download/v1.0/'
MIRROR_ENV = 'MMREPVIT_RELEASE_MIRROR'


def is_url(path: str) -> bool:
    return path.startswith(('http://', 'https://'))


def cache_path(url: str) -> str:
    """Where the file of ``url`` is kept: the place mmengine's (torch hub's) loader uses."""
    return osp.join(torch.hub.get_dir(), 'checkpoints', osp.basename(urlparse(url).path))


def mirrored(url: str) -> str:
    """``url``, or, for a release file while ``MMREPVIT_RELEASE_MIRROR`` is set, the same file
    in the mirror (a URL, or a path in a local folder)."""
    mirror = os.environ.get(MIRROR_ENV, '').strip()
    if not mirror or not url.startswith(RELEASE_URL):
        return url
    name = url[len(RELEASE_URL):]
    if is_url(mirror):
        return mirror.rstrip('/') + '/' + name
    folder = mirror[len('file://'):] if mirror.startswith('file://') else mirror
    return osp.join(osp.expanduser(folder), name)


def _use_local_file() -> str:
    return ('use a local file instead: --cfg-options model.backbone.init_cfg.checkpoint=PATH '
            '(a backbone\'s ImageNet weights) or load_from=PATH, or PATH as the checkpoint '
            'argument of tools/test.py / tools/infer.py --weights.')


def _remedies(url: str, local: str) -> str:
    mirror = (f'set {MIRROR_ENV} to a folder or server holding the release files, or '
              if url.startswith(RELEASE_URL) else '')
    return (f'Download it where you can and put it at {local!r} (it is then read from there), '
            f'{mirror}{_use_local_file()}')


def fetch_url(url: str) -> str:
    """The local path of the checkpoint at ``url``: downloaded (rank 0 of a distributed job,
    with a progress bar) unless cached; from the mirror when one is set."""
    source, local = mirrored(url), cache_path(url)
    if not is_url(source):
        if not osp.isfile(source):
            raise CheckpointDownloadError(
                f'Checkpoint {url!r}: {MIRROR_ENV} points it at {source!r}, which does not '
                f'exist. Put the release file there, unset {MIRROR_ENV} to download it, or '
                f'{_use_local_file()}')
        return source
    if osp.isfile(local):
        return local
    rank, world_size = get_dist_info()
    error = None
    if rank == 0:
        os.makedirs(osp.dirname(local), exist_ok=True)
        print_log(f'Downloading {source} to {local}', logger='current')
        try:  # written to a temporary file first: an interrupted download leaves no file
            torch.hub.download_url_to_file(source, local, progress=True)
        except (OSError, http.client.HTTPException, ValueError) as e:
            error = f'{type(e).__name__}: {e}'
    if world_size > 1:
        barrier()
    if not osp.isfile(local):
        via = f' (from the mirror {source!r})' if source != url else ''
        raise CheckpointDownloadError(
            f'Could not download checkpoint {url!r}{via}: '
            f'{error or "rank 0 could not download it"}.\n{_remedies(url, local)}')
    return local
