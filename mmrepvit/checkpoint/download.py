"""Checkpoints named by URL: downloaded once into a folder per URL of torch hub's cache, with
a record of what the server said, checked against the server on each use; the release URLs
optionally read from a mirror (``MMREPVIT_RELEASE_MIRROR``). docs/checkpoints.md, "Checkpoints
named by URL", says how.
"""
import hashlib
import http.client
import json
import os
import os.path as osp
import urllib.request
from typing import Optional
from urllib.parse import urlparse

import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.logging import print_log

from ..errors import CheckpointDownloadError

RELEASE_URL = 'https://github.com/THU-MIG/RepViT/releases/download/v1.0/'
MIRROR_ENV = 'MMREPVIT_RELEASE_MIRROR'
HEAD_TIMEOUT_S = 10  # asking the server whether the cached file is still its file
# what the server says of a file, as response headers and as keys of the cache record
SERVER_HEADERS = (('etag', 'ETag'), ('last_modified', 'Last-Modified'))
USE_LOCAL_FILE = ('use a local file instead: --cfg-options model.backbone.init_cfg.checkpoint=PATH '
                  '(a backbone\'s ImageNet weights) or load_from=PATH, or PATH as the checkpoint '
                  'argument of tools/test.py / tools/infer.py --weights.')


def is_url(path: str) -> bool:
    return path.startswith(('http://', 'https://'))


def cache_path(url: str) -> str:
    """Where the file of ``url`` is kept: a folder of torch hub's checkpoint cache for this
    URL alone (the first 16 hex digits of its SHA-256), under the URL's file name."""
    key = hashlib.sha256(url.encode('utf-8')).hexdigest()[:16]
    return osp.join(torch.hub.get_dir(), 'checkpoints', key, osp.basename(urlparse(url).path))


def record_path(local: str) -> str:
    """The record beside cached file ``local``: its URL and what the server said of it."""
    return local + '.source.json'


def server_says(source: str) -> Optional[dict]:
    """What the server says of the file at ``source`` (a HEAD request): ``size`` (bytes),
    ``etag``, ``last_modified``, each None where not given; None if it cannot be asked
    (offline, refused, an HTTP error)."""
    request = urllib.request.Request(source, method='HEAD',
                                     headers={'User-Agent': 'mmrepvit'})
    try:
        with urllib.request.urlopen(request, timeout=HEAD_TIMEOUT_S) as response:
            headers = response.headers
    except (OSError, http.client.HTTPException, ValueError):
        return None
    length = (headers.get('Content-Length') or '').strip()
    said = {key: headers.get(name) for key, name in SERVER_HEADERS}
    return dict(said, size=int(length) if length.isdigit() else None)


def _read_record(local: str) -> Optional[dict]:
    try:
        with open(record_path(local)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _write_record(url: str, source: str, local: str, server: Optional[dict]) -> None:
    record = dict(url=url, source=source, size=osp.getsize(local))
    if server is not None:
        record.update({key: server[key] for key, _ in SERVER_HEADERS})
    with open(record_path(local), 'w') as f:
        json.dump(record, f, indent=1)


def _not_the_urls_file(url: str, source: str, local: str, record: Optional[dict],
                       server: Optional[dict]) -> Optional[str]:
    """Why the cached file ``local`` is not (or no longer) the file of ``url``, or None. A
    file put there by hand (no record) is checked against the server's size only."""
    size = osp.getsize(local)
    if record is not None:
        if record.get('url') != url:
            return f'its record names another URL, {record.get("url")!r}'
        if record.get('size') not in (None, size):
            return f'it is {size} bytes, but was {record["size"]} bytes when downloaded'
    if server is None:
        return None
    if server['size'] is not None and server['size'] != size:
        return f'it is {size} bytes, but the server says {server["size"]} bytes'
    if record is not None and record.get('source') == source:
        for key, name in SERVER_HEADERS:
            if server[key] and record.get(key) and server[key] != record[key]:
                return f'the server\'s file has changed ({name} {record[key]} -> {server[key]})'
    return None


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


def _cache_url(url: str, source: str, local: str) -> Optional[str]:
    """Make ``local`` the file of ``url`` (downloaded from ``source``), unless it already is;
    the reason, if it could not."""
    server = server_says(source)
    stale = None
    if osp.isfile(local):
        record = _read_record(local)
        stale = _not_the_urls_file(url, source, local, record, server)
        if stale is None:
            if record is None and server is not None:  # put there by hand: the server agrees
                _write_record(url, source, local, server)
            return None
        print_log(f'The cached {local} is not the file of {url}: {stale}. Downloading it '
                  f'again.', logger='current')
        for path in (local, record_path(local)):
            if osp.exists(path):
                os.remove(path)
        stale = f' (the cached file was removed: {stale})'
    os.makedirs(osp.dirname(local), exist_ok=True)
    print_log(f'Downloading {source} to {local}', logger='current')
    try:  # written to a temporary file first: an interrupted download leaves no file
        torch.hub.download_url_to_file(source, local, progress=True)
    except (OSError, http.client.HTTPException, ValueError) as e:
        if not os.listdir(osp.dirname(local)):
            os.rmdir(osp.dirname(local))  # no empty folder per URL that failed
        return f'{type(e).__name__}: {e}{stale or ""}'
    size = osp.getsize(local)
    if server is not None and server['size'] not in (None, size):
        os.remove(local)
        return f'{size} bytes arrived, but the server said {server["size"]} (interrupted?)'
    _write_record(url, source, local, server)
    return None


def fetch_url(url: str) -> str:
    """The local path of the checkpoint at ``url``: downloaded (rank 0 of a distributed job,
    with a progress bar) unless cached and still the server's file; from the mirror when one
    is set."""
    source, local = mirrored(url), cache_path(url)
    if not is_url(source):
        if not osp.isfile(source):
            raise CheckpointDownloadError(
                f'Checkpoint {url!r}: {MIRROR_ENV} points it at {source!r}, which does not '
                f'exist. Put the release file there, unset {MIRROR_ENV} to download it, or '
                f'{USE_LOCAL_FILE}')
        return source
    rank, world_size = get_dist_info()
    error = _cache_url(url, source, local) if rank == 0 else None
    if world_size > 1:
        barrier()
    if error is not None or not osp.isfile(local):
        via = f' (from the mirror {source!r})' if source != url else ''
        mirror = (f'set {MIRROR_ENV} to a folder or server holding the release files, or '
                  if url.startswith(RELEASE_URL) else '')
        raise CheckpointDownloadError(
            f'Could not download checkpoint {url!r}{via}: '
            f'{error or "rank 0 could not download it"}.\nDownload it where you can and put it '
            f'at {local!r} (it is then read from there), {mirror}{USE_LOCAL_FILE}')
    return local
