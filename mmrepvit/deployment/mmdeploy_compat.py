"""Everything this project needs to run OpenMMLab's ``mmdeploy`` on its own stack, in one place.

mmdeploy 1.3.1 (the last release, Dec. 2023) predates torch 2.9+. Its ONNX path works here
after the shims below. Each is applied only inside :func:`mmdeploy_context` (the export call),
only when the installed versions need it, and is undone on exit: importing ``mmrepvit`` or this
module changes nothing, and code outside the ``with`` block sees stock torch.

=====  ===========================  =======================================================
shim   needed for                   what goes wrong without it
=====  ===========================  =======================================================
1      torch >= 2.9, mmdeploy 1.3   ``torch.onnx.export`` defaults to the dynamo exporter,
                                    which mmdeploy's function rewriters break
                                    (``ModuleNotFoundError: onnxscript``, then a
                                    ``dynamic_shapes`` mismatch): ``dynamo=False`` is passed.
2      torch >= 2.13, mmdeploy 1.3  ``mmdeploy/mmcv/ops/roi_align.py`` imports ``_cast_Long``
                                    from ``torch.onnx.symbolic_opset9`` (gone in 2.13) while
                                    exporting RoIAlign: an equivalent ``Cast`` to int64 is
                                    provided.
3      mmseg 1.x ``Upsample``       ``int(t * scale_factor)`` is frozen by the tracer, so an
                                    exported Semantic FPN is silently wrong at any other input
                                    size. Not used through mmdeploy here: this project exports
                                    segmentors itself, through
                                    ``mmrepvit.deployment.export.make_traceable`` (which
                                    swaps those modules for ``F.interpolate(scale_factor=)``).
=====  ===========================  =======================================================

mmdeploy is installed without its dependencies (``make install-deploy``;
``requirements/deploy.txt``) so that it cannot replace torch, and its ``protobuf<=3.20.2`` pin
is ignored: nothing on the ONNX Runtime path uses protobuf through mmdeploy.
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


def _torch_at_least(major: int, minor: int) -> bool:
    parts = torch.__version__.split('+')[0].split('.')
    return (int(parts[0]), int(parts[1])) >= (major, minor)


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
    """Apply the shims the installed torch needs (see the module docstring); undo on exit."""
    require_mmdeploy()
    restore = []
    if _torch_at_least(2, 9):  # shim 1: dynamo became the default exporter
        original = torch.onnx.export

        @functools.wraps(original)
        def export(*args, **kwargs):
            kwargs.setdefault('dynamo', False)
            return original(*args, **kwargs)

        torch.onnx.export = export
        restore.append(lambda: setattr(torch.onnx, 'export', original))
    if not hasattr(opset9, '_cast_Long'):  # shim 2: removed from torch in 2.13
        opset9._cast_Long = _cast_long
        restore.append(lambda: delattr(opset9, '_cast_Long'))
    try:
        yield
    finally:
        for undo in reversed(restore):
            undo()
