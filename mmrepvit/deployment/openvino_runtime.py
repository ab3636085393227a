"""OpenVINO as a second runtime: it reads the exported ``.onnx`` (float or int8 QDQ) itself,
or an IR ``.xml``, and runs it in the precision asked for, set and read back from the compiled
model (its CPU plugin would otherwise pick bf16 by itself where the CPU has it).
"""
import functools
import os
from typing import Optional

import torch

from ..utils.cpu import cpu_model
from .runtime import RuntimeSpec, Sessions, UnsupportedPrecision, onnx_precision, register_runtime
from .seg_postprocess import cut_final_resize_openvino


@functools.lru_cache(maxsize=None)
def openvino_core():
    """The process's one OpenVINO ``Core`` (an ImportError naming the install command without
    openvino). One for the process's life: released ``Core`` s leave the thread's alternate
    signal stack on freed memory (docs/deployment.md, "One ``Core`` per process")."""
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
        return core.read_model(os.fspath(path))
    except Exception as error:  # OpenVINO raises RuntimeError for unreadable files
        raise ValueError(f'{path!r} is not a model OpenVINO can read ({type(error).__name__}: '
                         f'{str(error).strip().splitlines()[-1]}); export one with '
                         f'tools/export_onnx.py') from error


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


class OpenVinoSessions(Sessions):
    """An ONNX file's (or IR's) OpenVINO compiled models and infer requests."""

    def __init__(self, model_file: str, precision: str = 'f32', threads: Optional[int] = None,
                 low_resolution: bool = False):
        self.precision = precision
        super().__init__(model_file, threads, low_resolution)

    def read(self, low_resolution: bool):
        model = read_openvino(self.path)
        if low_resolution:
            model, self.resize_mode = cut_final_resize_openvino(model)
        return model

    def names(self, compiled):
        return ([i.get_any_name() for i in compiled[0].inputs],
                [o.get_any_name() for o in compiled[0].outputs])

    def compile(self, threads: int):
        compiled = compile_openvino(self.model, self.precision, threads, repr(self.path))
        return compiled, compiled.create_infer_request()

    def infer(self, compiled, feed):
        results = compiled[1].infer(feed, share_inputs=True)  # outputs are copies
        return [results[i] for i in range(len(self.output_names))]


def openvino_file_precision(path: str) -> str:
    """``'int8'`` if an IR holds FakeQuantize ops (an ONNX file: its QDQ ops), else ``'f32'``."""
    if not path.endswith('.xml'):
        return onnx_precision(path)
    with open(path, errors='replace') as f:
        return 'int8' if 'type="FakeQuantize"' in f.read() else 'f32'


register_runtime(RuntimeSpec(
    'openvino', ('.onnx', '.xml'), ('f32', 'bf16', 'int8'),
    open=lambda path, precision, device, threads, low_resolution: OpenVinoSessions(
        path, precision, threads, low_resolution),
    check=read_openvino, precision_of=openvino_file_precision,
    export_tool='tools/export_onnx.py', install='make install-openvino'))
