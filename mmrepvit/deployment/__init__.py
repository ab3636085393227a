"""Whole-model deployment to ONNX Runtime: export (``export_model``; detectors through
mmdeploy, segmentors through this project's exporter), int8 copies for ONNX Runtime on CPU
(``quantize``) and deployed inference (``build_onnx_model``: an ONNX file behind the PyTorch
model's ``test_step``).

Not imported by ``import mmrepvit``; mmdeploy and onnxruntime are imported only when used.
"""
from .runtime import build_onnx_model

__all__ = ['build_onnx_model', 'export_model']


def export_model(*args, **kwargs):
    """See ``mmrepvit.deployment.export.export_model``."""
    from .export import export_model as export
    return export(*args, **kwargs)
