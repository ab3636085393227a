"""Errors raised while reading checkpoints or loading weights; each message names the file or
keys and what would work; and how a message lists many things."""
import pickle


def first_few(items, limit, sep=', '):
    """The first ``limit`` of ``items`` (strings) joined, then how many more there are."""
    return sep.join(items[:limit]) + (f' and {len(items) - limit} more' if len(items) > limit
                                      else '')


class CheckpointError(RuntimeError):
    """Base class: a checkpoint could not be used."""


class CheckpointFormatError(CheckpointError):
    """The file is not a (complete) PyTorch checkpoint, or holds no recognisable weights."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """The file pickles a global outside the allow-list: loading it could run its code. Also
    the ``pickle.UnpicklingError`` that torch's own refusal is, for code that catches that."""


class CheckpointMismatchError(CheckpointError):
    """The weights do not fit the backbone: keys missing, left over, or of the wrong shape."""


class CheckpointDownloadError(CheckpointError):
    """A checkpoint named by URL could not be downloaded (offline, not found, refused)."""
