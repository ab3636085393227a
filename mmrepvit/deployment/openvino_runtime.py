"""OpenVINO as a second runtime for the exported graphs, and the precision a deployed model runs
in, stated and checked instead of left to a runtime's default.

OpenVINO reads the exported ``.onnx`` itself (``Core.read_model``): no conversion step and no
second file to keep in step with the first; the int8 graph of ``deployment.quantize`` (QDQ)
is read the same way. An OpenVINO IR (``.xml`` beside its ``.bin``) is read too.

OpenVINO's CPU plugin picks bf16 by itself on CPUs that have it, which changes the outputs;
here the precision is always set (``INFERENCE_PRECISION_HINT``) and read back from the
compiled model, so that a runtime that quietly computes in another precision is an error.
"""
import functools
import os
from typing import Dict, List, Optional

import numpy as np
import torch

from ..utils.cpu import BF16_FLAGS, cpu_flags, cpu_model, describe_cpu
from .executorch_runtime import PTE_SUFFIX, load_program
from .seg_postprocess import cut_final_resize_openvino

RUNTIMES = ('onnxruntime', 'openvino', 'executorch')
PRECISIONS = ('f32', 'bf16', 'int8')
# ops that make a graph an int8 one: ONNX QDQ / QLinear, OpenVINO's FakeQuantize
INT8_OPS = ('QuantizeLinear', 'DequantizeLinear', 'QLinearConv', 'FakeQuantize')


class UnsupportedPrecision(ValueError):
    """A precision this runtime, model file or CPU cannot give."""


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise ValueError(f'runtime={runtime!r}: valid are {", ".join(RUNTIMES)}')
    return runtime


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
    ``tools/export_onnx.py --int8``) only as int8. Anything else raises, naming the file."""
    check_runtime(runtime)
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f'precision={precision!r}: valid are {", ".join(PRECISIONS)}')
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


@functools.lru_cache(maxsize=None)
def openvino_core():
    """The process's one OpenVINO ``Core`` (an ImportError naming the install command without
    openvino).

    One, kept for the life of the process: a ``Core`` that compiles for the CPU installs its
    own alternate signal stack on the calling thread and puts back the one it found when it
    is released. Two released in the order they were made leave the thread's alternate stack
    on freed memory, and the next signal with a handler (a child process ending, with
    PyTorch's DataLoader handler set) kills the process with a segmentation fault that
    ``faulthandler`` cannot report (tests/test_openvino.py reproduces it)."""
    try:
        import openvino
    except ImportError as error:
        raise ImportError('runtime openvino needs the openvino package: make install-openvino '
                          '(pip install --no-deps -r requirements/openvino.txt)') from error
    return openvino.Core()


def read_openvino(path: str):
    """``path`` (.onnx or IR .xml) as an OpenVINO model; ValueError naming it if unreadable."""
    core = openvino_core()
    try:
        model = core.read_model(os.fspath(path))
    except Exception as error:  # OpenVINO raises RuntimeError for unreadable files
        raise ValueError(f'{path!r} is not a model OpenVINO can read ({type(error).__name__}: '
                         f'{str(error).strip().splitlines()[-1]}); export one with '
                         f'tools/export_onnx.py') from error
    return model


# how the CPU plugin runs one request at a time (docs/deployment.md measures each lever)
LATENCY_PROPERTIES = {
    'PERFORMANCE_HINT': 'LATENCY',
    'NUM_STREAMS': 1,
    # left free, the threads move to idle cores: on a shared machine, pinned threads wait
    # for cores another process holds
    'ENABLE_CPU_PINNING': False,
}


def compile_openvino(model, precision: str = 'f32', threads: Optional[int] = None,
                     name: str = 'the model'):
    """An OpenVINO ``model`` compiled for the CPU in ``precision`` with ``threads`` inference
    threads (default: torch's setting) and ``LATENCY_PROPERTIES``. The precision the plugin
    compiled is read back: one other than asked for raises instead of running silently."""
    core = openvino_core()
    hint = 'bf16' if precision == 'bf16' else 'f32'  # int8 graphs: the rest stays float32
    config = dict(LATENCY_PROPERTIES, INFERENCE_NUM_THREADS=int(threads or torch.get_num_threads()),
                  INFERENCE_PRECISION_HINT=hint)
    compiled = core.compile_model(model, 'CPU', config)
    got = compiled.get_property('INFERENCE_PRECISION_HINT').to_string()
    if got != hint:
        raise UnsupportedPrecision(
            f'OpenVINO compiled {name} in {got}, not {hint} as asked: this CPU '
            f'({cpu_model()}) or this OpenVINO build cannot run it in {precision}')
    return compiled


class OpenVinoSessions:
    """The OpenVINO counterpart of ``runtime.OnnxSessions``: the same ``input_names``,
    ``output_names``, ``resize_mode`` and ``run``, one compiled model per thread count
    (``threads=None`` follows torch's current setting at each call)."""

    def __init__(self, model_file: str, precision: str = 'f32', threads: Optional[int] = None,
                 low_resolution: bool = False):
        self.model_file, self.precision, self.threads = os.fspath(model_file), precision, threads
        self.model, self.resize_mode = read_openvino(self.model_file), None
        if low_resolution:
            self.model, self.resize_mode = cut_final_resize_openvino(self.model)
        self._requests = {}
        compiled = self._request()[0]
        self.input_names = [i.get_any_name() for i in compiled.inputs]
        self.input_name = self.input_names[0]
        self.output_names = [o.get_any_name() for o in compiled.outputs]

    def _request(self):
        n = self.threads or torch.get_num_threads()
        if n not in self._requests:
            compiled = compile_openvino(self.model, self.precision, n, repr(self.model_file))
            self._requests[n] = (compiled, compiled.create_infer_request())
        return self._requests[n]

    def run(self, image: torch.Tensor, **extra: np.ndarray) -> List[torch.Tensor]:
        feed: Dict[str, np.ndarray] = {
            self.input_name: image.detach().cpu().contiguous().numpy().astype(np.float32,
                                                                              copy=False)}
        feed.update(extra)
        _, request = self._request()
        results = request.infer(feed, share_inputs=True)  # outputs are copies
        return [torch.from_numpy(np.asarray(results[i])) for i in range(len(self.output_names))]


def describe_run(runtime: str, precision: str) -> str:
    """What every deployed run prints: runtime, precision and CPU."""
    return f'runtime {runtime}, precision {precision}, CPU {describe_cpu()}'
