"""The shims that let OpenMMLab's ``mmdeploy`` 1.3.1 export on this project's torch, applied
only inside :func:`mmdeploy_context` (the export call), only when the installed torch needs
them, and undone on exit (docs/deployment.md, "Install", lists them and why).
"""
import contextlib
import functools
import warnings
from typing import Iterator

import torch
import torch.onnx.symbolic_opset9 as opset9

MMDEPLOY_VERSION = '1.3.1'
INSTALL_COMMAND = ('make install-deploy   (or: pip install --no-deps mmdeploy==1.3.1 '
                   'aenum==3.1.17 multiprocess==0.70.19 dill==0.4.1)')


def require_mmdeploy():
    """Import mmdeploy, or fail with the command that installs it (never silently skip)."""
    try:
        import mmdeploy
    except ImportError as e:
        raise ImportError(
            f'Exporting a detector needs mmdeploy=={MMDEPLOY_VERSION}, which is not installed. '
            f'Install it without touching torch: {INSTALL_COMMAND}') from e
    if mmdeploy.__version__ != MMDEPLOY_VERSION:
        warnings.warn(f'mmdeploy {mmdeploy.__version__} found; the shims in '
                      f'{__name__} were written for {MMDEPLOY_VERSION}', stacklevel=2)
    return mmdeploy


def _cast_long(g, input, non_blocking=False):
    """torch < 2.13's ``symbolic_opset9._cast_Long``: an ONNX Cast to int64."""
    from onnx import TensorProto
    return g.op('Cast', input, to_i=TensorProto.INT64)


@contextlib.contextmanager
def mmdeploy_context() -> Iterator[None]:
    """Apply the shims the installed torch needs; undo them on exit."""
    require_mmdeploy()
    restore = []
    version = tuple(int(p) for p in torch.__version__.split('+')[0].split('.')[:2])
    if version >= (2, 9):  # dynamo became the default exporter; mmdeploy's rewriters break it
        original = torch.onnx.export

        @functools.wraps(original)
        def export(*args, **kwargs):
            kwargs.setdefault('dynamo', False)
            return original(*args, **kwargs)

        torch.onnx.export = export
        restore.append(lambda: setattr(torch.onnx, 'export', original))
    if not hasattr(opset9, '_cast_Long'):  # removed in torch 2.13; mmdeploy's RoIAlign needs it
        opset9._cast_Long = _cast_long
        restore.append(lambda: delattr(opset9, '_cast_Long'))
    try:
        yield
    finally:
        for undo in reversed(restore):
            undo()
