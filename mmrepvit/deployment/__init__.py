"""Whole-model deployment: export (``export_model``; ExecuTorch: ``executorch_program``), int8
copies (``quantize``) and deployed inference (``open_model``). Not imported by ``import
mmrepvit``; mmdeploy, onnxruntime and executorch are imported only when used.
"""
# each runtime's module registers it in runtime.RUNTIMES (a new runtime: its module, imported here)
from . import openvino_runtime  # noqa: F401,I001 (the order runtimes are listed in)
from . import executorch_runtime  # noqa: F401,I001
from .deployed_model import check_model_file, is_deployed_file, open_model
from .export import export_model
from .runtime import PRECISIONS, RUNTIMES, UnsupportedPrecision

__all__ = ['check_model_file', 'export_model', 'is_deployed_file', 'open_model', 'PRECISIONS',
           'RUNTIMES', 'UnsupportedPrecision']
