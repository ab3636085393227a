"""The one reader of checkpoint files: ``torch.load(weights_only=True)`` only, for our loads and
(``register_safe_checkpoint_loader``) mmengine's. The allow-list holds exactly what an mmengine
Runner checkpoint pickles, under numpy 1 and 2 names (docs/checkpoints.md, "Safe loading";
``tests/test_safe_load.py`` checks it); anything else is refused, naming the global.
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


# Where numpy 1 and numpy 2 keep ``_reconstruct`` and ``scalar``, as pickles name them: both
# are bound to the running numpy's functions.
NUMPY_MULTIARRAY_MODULES = ('numpy.core.multiarray', 'numpy._core.multiarray')
# The globals an mmengine Runner checkpoint names, as (object, name in the pickle).
MMENGINE_CHECKPOINT_GLOBALS = (
    (HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
    (np.ndarray, 'numpy.ndarray'),
    (np.dtype, 'numpy.dtype'),
    (history_buffer_getattr, 'builtins.getattr'),
    *((getattr(_np_multiarray, name), f'{module}.{name}')
      for name in ('_reconstruct', 'scalar') for module in NUMPY_MULTIARRAY_MODULES),
)
# Classes of the numeric numpy dtypes: an unpickled ``np.dtype`` is built as one of these.
NUMPY_DTYPE_CLASSES = tuple(
    type(np.dtype(code)) for code in ('?', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8',
                                      'f2', 'f4', 'f8'))
ALLOWED_GLOBAL_NAMES = frozenset(name for _, name in MMENGINE_CHECKPOINT_GLOBALS)
SAFE_GLOBALS = list(MMENGINE_CHECKPOINT_GLOBALS) + list(NUMPY_DTYPE_CLASSES)


def register_safe_globals():
    """Allow-list the objects above for every ``torch.load(weights_only=True)`` of the
    process. Idempotent."""
    torch.serialization.add_safe_globals(SAFE_GLOBALS)


@contextlib.contextmanager
def allowed_globals():
    """Allow-list the objects above inside the ``with`` block only; torch's list is as it was
    afterwards. (``torch.serialization.safe_globals`` would remove them on exit even where
    the process had allow-listed them before.)"""
    saved = torch.serialization.get_safe_globals()
    torch.serialization.add_safe_globals(SAFE_GLOBALS)
    try:
        yield
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)


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
    """A local path, or an http(s) URL downloaded once into the checkpoint cache
    (``download.fetch_url``)."""
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
    with open(path, 'rb') as f:
        head = f.read(4)
    # torch >= 1.6's zip format, or an older torch pickle (protocol 2 or later), or neither
    kind = 'zip' if head.startswith(b'PK') else 'legacy' if head[:1] == b'\x80' else None
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
    ``Pretrained`` of other modules) through :func:`load_checkpoint_file` (``process_wide.py``)."""
    for prefixes in ('', ('http://', 'https://')):
        CheckpointLoader.register_scheme(prefixes=prefixes, loader=_mmengine_load, force=True)
