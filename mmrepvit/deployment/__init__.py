"""Whole-model deployment to ONNX Runtime and OpenVINO, and to phones as ExecuTorch programs
(``executorch_program``): export (``export_model``; detectors through
mmdeploy, segmentors through this project's exporter), int8 copies for ONNX Runtime on CPU
(``quantize``) and deployed inference (``build_onnx_model``: an ONNX file behind the PyTorch
model's ``test_step``).

Not imported by ``import mmrepvit``; mmdeploy, onnxruntime and executorch are imported only
when used.
"""
from .export import export_model
from .openvino_runtime import PRECISIONS, RUNTIMES, UnsupportedPrecision
from .runtime import build_onnx_model, check_deployed_options, check_onnx_file, is_deployed_file

__all__ = ['build_onnx_model', 'check_deployed_options', 'check_onnx_file', 'export_model',
           'is_deployed_file', 'PRECISIONS', 'RUNTIMES', 'UnsupportedPrecision']
