"""The runtimes that run exported models (ONNX Runtime, OpenVINO, ExecuTorch), the precision a
deployed model runs in, stated and checked instead of left to a runtime's default, and the
sessions that run one file (``deployed_model.make_sessions`` picks one): what it puts behind the
PyTorch model's interface.
"""
import os
from typing import List, Optional, Union

import numpy as np
import torch

from ..utils.cpu import BF16_FLAGS, cpu_flags, cpu_model, describe_cpu
from .executorch_runtime import PTE_SUFFIX, load_program
from .seg_postprocess import cut_final_resize_onnx

RUNTIMES = ('onnxruntime', 'openvino', 'executorch')
PRECISIONS = ('f32', 'bf16', 'int8')
# ops that make a graph an int8 one: ONNX QDQ / QLinear, OpenVINO's FakeQuantize
INT8_OPS = ('QuantizeLinear', 'DequantizeLinear', 'QLinearConv', 'FakeQuantize')


class UnsupportedPrecision(ValueError):
    """A precision this runtime, model file or CPU cannot give."""


def check_run_options(runtime: Optional[str], precision: Optional[str]) -> None:
    """Raise ValueError naming ``runtime`` / ``precision`` unless each is None or one of
    ``RUNTIMES`` / ``PRECISIONS``."""
    for name, value, valid in (('runtime', runtime, RUNTIMES),
                               ('precision', precision, PRECISIONS)):
        if value is not None and value not in valid:
            raise ValueError(f'{name}={value!r}: valid are {", ".join(valid)}')


def stored_precision(path: str) -> str:
    """``'int8'`` if the model file holds quantisation ops (``INT8_OPS``), else ``'f32'``; an
    ExecuTorch program: the precision its contract states."""
    path = os.fspath(path)
    if path.endswith(PTE_SUFFIX):
        return load_program(path)[1]['precision']
    if path.endswith('.xml'):
        with open(path, errors='replace') as f:
            text = f.read()
        return 'int8' if 'type="FakeQuantize"' in text else 'f32'
    import onnx
    graph = onnx.load(path, load_external_data=False).graph
    return 'int8' if any(n.op_type in INT8_OPS for n in graph.node) else 'f32'


def require_bf16(flags=None) -> None:
    """Raise ``UnsupportedPrecision`` naming what the CPU lacks unless it computes in bf16."""
    flags = cpu_flags() if flags is None else flags
    if not any(f in flags for f in BF16_FLAGS):
        raise UnsupportedPrecision(
            f'precision bf16 needs a CPU with {" or ".join(BF16_FLAGS)} (AVX512-BF16 or AMX); '
            f'this CPU ({cpu_model()}) has neither: use precision f32 or int8')


def resolve_precision(runtime: str, path: str, precision: Optional[str] = None,
                      flags=None) -> str:
    """The precision ``path`` runs in under ``runtime``: ``precision`` checked against the
    file and the CPU, or, when None, what the file holds (f32 or int8).

    A float32 file runs in f32 or (OpenVINO, on a bf16 CPU) bf16; an int8 file (quantised by
    ``tools/export_onnx.py --int8``) only as int8. Anything else raises, naming the file.
    ``runtime`` and ``precision`` are valid names (``check_run_options``)."""
    stored = stored_precision(path)
    if precision is None:
        return stored
    if stored == 'int8' and precision != 'int8':
        raise UnsupportedPrecision(f'{path!r} is an int8 model: run it with precision int8, '
                                   f'or give the float32 export for {precision}')
    if stored == 'f32' and precision == 'int8':
        tool = 'export_executorch' if os.fspath(path).endswith(PTE_SUFFIX) else 'export_onnx'
        raise UnsupportedPrecision(f'{path!r} is a float32 model: precision int8 needs its int8 '
                                   f'copy (tools/{tool}.py ... --int8 PATH)')
    if precision == 'bf16':
        if runtime != 'openvino':
            raise UnsupportedPrecision(f'precision bf16 with runtime {runtime!r}: only '
                                       f'openvino runs these graphs in bf16 on a CPU')
        require_bf16(flags)
    return precision


def describe_run(runtime: str, precision: str) -> str:
    """What every deployed run prints: runtime, precision and CPU."""
    return f'runtime {runtime}, precision {precision}, CPU {describe_cpu()}'


def ort_session(model: Union[str, bytes], device: str = 'cpu', threads: Optional[int] = None,
                optimise: bool = True, optimised_file: Optional[str] = None, providers=None):
    """An ONNX Runtime session, the one way this project opens one: ``threads`` intra-op
    threads (default: torch's current setting, so both frameworks get the same share of the
    CPU), all graph optimisations (``optimise=False``: none; ``optimised_file``: the
    optimised graph written there), on ``device`` (``providers``: these instead).
    ``model``: a path, or a serialised model."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimise \
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if optimised_file:
        options.optimized_model_filepath = optimised_file
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # no warnings about initializers / shape inference
    # ONNX Runtime's pool threads otherwise spin on the cores for a while after each run,
    # taking them from whatever runs next (PyTorch in an interleaved benchmark, the rest of
    # a pipeline): on 2 cores that made the next PyTorch call several times slower
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    if providers is None:
        providers = ['CPUExecutionProvider']
        if str(device).startswith('cuda'):
            if 'CUDAExecutionProvider' not in ort.get_available_providers():
                raise RuntimeError(f'device={device!r}, but this onnxruntime has no CUDA '
                                   f'provider (install onnxruntime-gpu)')
            index = int(str(device).partition(':')[2] or 0)
            providers = [('CUDAExecutionProvider', dict(device_id=index))] + providers
    model = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(model, options, providers=providers)


class Sessions:
    """A model file compiled once per thread count: ``threads=None`` follows torch's current
    setting at each call (so ``torch.set_num_threads`` and the benchmark's thread groups apply
    to the runtime too), a number fixes it. ``resize_mode``: of a segmentor's graph cut before
    its final resize (``low_resolution``, ``seg_postprocess``), the removed resize's coordinate
    mode (None: nothing removed). Subclasses ``compile`` for n threads and ``infer`` a feed."""
    resize_mode = None

    def compiled(self):
        n = self.threads or torch.get_num_threads()
        if n not in self._compiled:
            self._compiled[n] = self.compile(n)
        return self._compiled[n]

    def run(self, image: torch.Tensor, **extra: np.ndarray) -> List[torch.Tensor]:
        feed = {self.input_name: image.detach().cpu().contiguous().numpy()
                .astype(np.float32, copy=False), **extra}
        return [torch.from_numpy(np.asarray(o)) for o in self.infer(self.compiled(), feed)]


class OnnxSessions(Sessions):
    """An ONNX file's ONNX Runtime sessions (``ort_session``)."""

    def __init__(self, onnx_file: str, device: str = 'cpu', threads: Optional[int] = None,
                 low_resolution: bool = False):
        self.onnx_file, self.device, self.threads = os.fspath(onnx_file), device, threads
        self.model, self._compiled = self.onnx_file, {}
        if low_resolution:
            import onnx
            graph = onnx.load(self.onnx_file)
            self.resize_mode = cut_final_resize_onnx(graph)
            if self.resize_mode is not None:
                self.model = graph.SerializeToString()
        first = self.compiled()
        self.input_names = [i.name for i in first.get_inputs()]
        self.input_name = self.input_names[0]
        self.output_names = [o.name for o in first.get_outputs()]

    def compile(self, threads: int):
        return ort_session(self.model, self.device, threads)

    def infer(self, session, feed):
        return session.run(None, feed)
