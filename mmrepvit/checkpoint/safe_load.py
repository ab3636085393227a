"""The one reader of checkpoint files: ``torch.load(weights_only=True)`` only, for our loads and
(``register_safe_checkpoint_loader``) mmengine's.

A pickle may name any importable callable and have it called while loading, so a checkpoint can
carry code; torch (>= 2.6) refuses by default every global that is not a tensor rebuild function
or a plain container. An mmengine Runner checkpoint pickles exactly these more (torch 2.13,
numpy 1.26, mmengine 0.10.7; ``tests/test_safe_load.py`` checks it):
``mmengine.logging.history_buffer.HistoryBuffer`` (the message hub's logs), numpy's
``_reconstruct``, ``ndarray``, ``dtype`` and ``scalar`` (its arrays and scalars), and
``builtins.getattr`` as ``getattr(HistoryBuffer, 'min')``. Our loads allow exactly those, for
their duration (``allowed_globals``); ``import mmrepvit`` allows them process-wide
(``register_safe_globals``, opt-out in ``process_wide.py``) so that mmengine's own
``load_checkpoint`` and ``runner.resume()`` work. ``builtins.getattr`` is bound to a function
that only looks up HistoryBuffer's statistics methods; ``numpy.dtype`` objects are built only
for the numeric dtypes (object and string ones are refused). Anything else is refused, naming
the global. numpy 2 renamed ``numpy.core`` to ``numpy._core``: both spellings of
``_reconstruct`` and ``scalar`` are bound to the running numpy's function, so a checkpoint
saved under either numpy loads under the other.
"""
import contextlib
import os
import os.path as osp
import pickle
import re
import types
import zipfile

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from ..errors import CheckpointFormatError, UnsafeCheckpointError
from .download import fetch_url, is_url

if np.lib.NumpyVersion(np.__version__) >= '2.0.0':
    from numpy._core import multiarray as _np_multiarray
else:
    from numpy.core import multiarray as _np_multiarray

# HistoryBuffer registers these four in every process (``_set_default_statistics``).
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'mean', 'current')
REFUSED_GETATTR = 'mmrepvit refused getattr'
# Phrases of torch's weights-only unpickler when it refuses (rather than fails to parse) data.
# ("unsupported GLOBAL ... whose module ... is blocked": os, posix, subprocess, sys, ...)
REFUSAL_MARKS = ('Unsupported global', 'unsupported GLOBAL', 'Can only', 'Trying to call reduce',
                 REFUSED_GETATTR)
# how torch names a refused global in its message
REFUSED_GLOBAL = re.compile(r'GLOBAL (\S+) (?:was not an allowed global|whose module)')


def history_buffer_getattr(obj, name):
    """What ``builtins.getattr`` means inside a checkpoint: HistoryBuffer's statistics only."""
    value = getattr(obj, name, None) if obj is HistoryBuffer else None
    if name not in HISTORY_BUFFER_STATISTICS or not isinstance(value, types.FunctionType):
        raise pickle.UnpicklingError(
            f'{REFUSED_GETATTR}({obj!r}, {name!r}): a checkpoint may only look up the '
            f'statistics methods {HISTORY_BUFFER_STATISTICS} of '
            f'mmengine.logging.history_buffer.HistoryBuffer')
    return value


# Where numpy 1 and numpy 2 keep ``_reconstruct`` and ``scalar``, as pickles name them.
NUMPY_MULTIARRAY_MODULES = ('numpy.core.multiarray', 'numpy._core.multiarray')


def _numpy_globals(name):
    """The running numpy's ``multiarray.<name>`` under the names both numpy 1 and 2 pickle."""
    function = getattr(_np_multiarray, name)
    return tuple((function, f'{module}.{name}') for module in NUMPY_MULTIARRAY_MODULES)


# The globals an mmengine Runner checkpoint names, as (object, name in the pickle).
MMENGINE_CHECKPOINT_GLOBALS = (
    (HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
    *_numpy_globals('_reconstruct'),
    (np.ndarray, 'numpy.ndarray'),
    (np.dtype, 'numpy.dtype'),
    *_numpy_globals('scalar'),
    (history_buffer_getattr, 'builtins.getattr'),
)
# Classes of the numeric numpy dtypes: an unpickled ``np.dtype`` is built as one of these.
NUMPY_DTYPE_CLASSES = tuple(
    type(np.dtype(code)) for code in ('?', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8',
                                      'f2', 'f4', 'f8'))
ALLOWED_GLOBAL_NAMES = frozenset(name for _, name in MMENGINE_CHECKPOINT_GLOBALS)


def _safe_globals():
    return list(MMENGINE_CHECKPOINT_GLOBALS) + list(NUMPY_DTYPE_CLASSES)


def register_safe_globals():
    """Allow-list the objects above for every ``torch.load(weights_only=True)`` of the
    process. Idempotent."""
    torch.serialization.add_safe_globals(_safe_globals())


@contextlib.contextmanager
def allowed_globals():
    """Allow-list the objects above inside the ``with`` block only; torch's list is as it was
    afterwards. (``torch.serialization.safe_globals`` would remove them on exit even where
    the process had allow-listed them before.)"""
    saved = torch.serialization.get_safe_globals()
    torch.serialization.add_safe_globals(_safe_globals())
    try:
        yield
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)


def _file_kind(path):
    """'zip' (torch >= 1.6 format), 'legacy' (older torch pickle), or None (neither)."""
    with open(path, 'rb') as f:
        head = f.read(4)
    if head.startswith(b'PK'):
        return 'zip'
    if head[:1] == b'\x80':  # a pickle, protocol 2 or later
        return 'legacy'
    return None


def _offending_globals(path, reason):
    """Globals of the file outside the allow-list (zip format), else the one torch named."""
    try:
        names = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # legacy (non-zip) format: only torch's message tells
        names = set(REFUSED_GLOBAL.findall(reason))
    return sorted(names - ALLOWED_GLOBAL_NAMES)


def _torch_reason(message):
    """The part of torch's weights-only error that says what was refused."""
    m = re.search(r'WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|$)', message, re.S)
    if m:
        return m.group(1).strip()
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    naming = [line for line in lines if REFUSED_GLOBAL.search(line)]
    return (naming or lines or [message])[0]


def _refusal(path, offending, detail):
    what = (f'it pickles {", ".join(offending)}, which the allow-list does not hold' if offending
            else 'it holds an object outside the allow-list (see below)')
    return UnsafeCheckpointError(
        f'Refusing to load {path!r}: {what}. A pickled global is code that runs while the file '
        f'is loaded, so only tensors, plain containers and the objects mmengine Runner '
        f'checkpoints need ({", ".join(sorted(ALLOWED_GLOBAL_NAMES))}, numeric numpy dtypes) '
        f'are accepted. If you trust the file, re-save just its tensors (e.g. its state_dict) '
        f'and load that.\ntorch said: {detail}')


def resolve_checkpoint_path(path):
    """A local path, or an http(s) URL downloaded once into the checkpoint cache, a folder
    per URL (``download.fetch_url``: mirror, progress, the cached file checked against the
    server, errors that say what to do offline)."""
    path = os.fspath(path)
    if is_url(path):
        return fetch_url(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'Checkpoint file {path!r} does not exist (or is not a file)')
    return path


def load_checkpoint_file(path: str, map_location: str = 'cpu') -> dict:
    """``torch.load(path, weights_only=True)`` with the allow-list, and errors that say whether
    the file is missing, truncated, not a checkpoint, or unsafe."""
    path = resolve_checkpoint_path(path)
    kind = _file_kind(path)
    if kind is None or (kind == 'zip' and not zipfile.is_zipfile(path)):
        size = osp.getsize(path)
        what = ('is empty' if size == 0 else
                f'is truncated or corrupted ({size} bytes, no zip directory at its end); '
                f'download it again' if kind == 'zip' else
                'is not a PyTorch checkpoint (neither a torch zip archive nor a pickle)')
        raise CheckpointFormatError(f'Checkpoint file {path!r} {what}')
    try:
        with allowed_globals():
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        reason = _torch_reason(str(e))
        if kind == 'zip' or any(mark in reason for mark in REFUSAL_MARKS):
            raise _refusal(path, _offending_globals(path, reason), reason) from None
        raise CheckpointFormatError(
            f'Checkpoint file {path!r} could not be unpickled (corrupted or not a '
            f'checkpoint): {reason}') from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointFormatError(
            f'Checkpoint file {path!r} could not be read (truncated or corrupted?): '
            f'{type(e).__name__}: {e}') from None


def _mmengine_load(filename, map_location=None):
    return load_checkpoint_file(osp.expanduser(filename), map_location=map_location)


def register_safe_checkpoint_loader():
    """Route mmengine's local-file and http(s) checkpoint loading (``resume``, ``load_from``,
    ``Pretrained`` init of other modules) through :func:`load_checkpoint_file`, through its
    public ``CheckpointLoader.register_scheme`` (a URL: downloaded once into the cache of
    ``download.py``, a folder per URL, not mmengine's own by file name). Process-wide, opt-out:
    ``process_wide.py``."""
    for prefixes in ('', ('http://', 'https://')):
        CheckpointLoader.register_scheme(prefixes=prefixes, loader=_mmengine_load, force=True)
