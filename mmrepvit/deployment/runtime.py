"""The runtimes that run exported models (``RUNTIMES``: ONNX Runtime here, the others register
from their ``<name>_runtime.py``), the precision a deployed model runs in, stated and checked,
and ONNX Runtime's sessions.
"""
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from ..utils.cpu import BF16_FLAGS, cpu_flags, cpu_model, describe_cpu
from .seg_postprocess import cut_final_resize_onnx

PRECISIONS = ('f32', 'bf16', 'int8')
# ops that make a graph an int8 one: ONNX QDQ / QLinear, OpenVINO's FakeQuantize
INT8_OPS = ('QuantizeLinear', 'DequantizeLinear', 'QLinearConv', 'FakeQuantize')


@dataclass(frozen=True)
class RuntimeSpec:
    """A runtime: the files it runs (``suffixes``) and in which precisions; ``open(path,
    precision, device, threads, low_resolution)`` -> its ``Sessions``; ``check(path)``
    (ValueError naming an unreadable file); ``precision_of(path)`` ('f32' or 'int8'); the tool
    that makes its files; its install command; whether it runs on CUDA; whether its files are
    app programs (the original image in, results out)."""
    name: str
    suffixes: Tuple[str, ...]
    precisions: Tuple[str, ...]
    open: Callable
    check: Callable[[str], object]
    precision_of: Callable[[str], str]
    export_tool: str
    install: str
    cuda: bool = False
    app_program: bool = False


# name -> RuntimeSpec, in registration order (ONNX Runtime first: the default)
RUNTIMES: Dict[str, RuntimeSpec] = {}
DEFAULT_RUNTIME = 'onnxruntime'


def register_runtime(runtime: RuntimeSpec) -> RuntimeSpec:
    """Add ``runtime`` to ``RUNTIMES`` (what ``--runtime`` and ``open_model`` offer)."""
    RUNTIMES[runtime.name] = runtime
    return runtime


def runs_app_programs(runtime: Optional[str]) -> bool:
    """Whether ``runtime``'s files are app programs (they take the original image)."""
    return runtime in RUNTIMES and RUNTIMES[runtime].app_program


def deployed_suffixes() -> str:
    """The kinds of file the registered runtimes run, for messages."""
    return ', '.join(dict.fromkeys(x for r in RUNTIMES.values() for x in r.suffixes))


def file_owner(path: str) -> Optional[RuntimeSpec]:
    """The first registered runtime whose files ``path`` names (None: a checkpoint)."""
    return next((r for r in RUNTIMES.values() if os.fspath(path).endswith(r.suffixes)), None)


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
    """``'int8'`` or ``'f32'``: what the model file holds, read by the runtime owning it."""
    owner = file_owner(path)
    if owner is None:
        raise ValueError(f'{path!r} is not an exported model: the runtimes run '
                         f'{deployed_suffixes()} files')
    return owner.precision_of(os.fspath(path))


def onnx_precision(path: str) -> str:
    """``'int8'`` if the ONNX file holds quantisation ops (``INT8_OPS``), else ``'f32'``."""
    import onnx
    graph = onnx.load(path, load_external_data=False).graph
    return 'int8' if any(n.op_type in INT8_OPS for n in graph.node) else 'f32'


def check_onnx_file(path: str) -> None:
    """ValueError naming ``path`` unless it is a readable ONNX model."""
    import onnx
    try:
        onnx.checker.check_model(path)
    except Exception as error:  # DecodeError, ValidationError, OSError ...
        raise ValueError(f'{path!r} is not a readable ONNX model ({type(error).__name__}: '
                         f'{error}); export one with tools/export_onnx.py') from error


def require_bf16(flags=None) -> None:
    """Raise ``UnsupportedPrecision`` naming what the CPU lacks unless it computes in bf16."""
    flags = cpu_flags() if flags is None else flags
    if not any(f in flags for f in BF16_FLAGS):
        raise UnsupportedPrecision(
            f'precision bf16 needs a CPU with {" or ".join(BF16_FLAGS)} (AVX512-BF16 or AMX); '
            f'this CPU ({cpu_model()}) has neither: use precision f32 or int8')


def resolve_precision(runtime: str, path: str, precision: Optional[str] = None,
                      flags=None) -> str:
    """The precision ``path`` runs in under ``runtime`` (valid names): ``precision`` checked
    against the file, the runtime and the CPU (float32 files: f32, or bf16 where offered; int8
    files: int8), or, when None, what the file holds."""
    stored = stored_precision(path)
    if precision is None:
        return stored
    if stored == 'int8' and precision != 'int8':
        raise UnsupportedPrecision(f'{path!r} is an int8 model: run it with precision int8, '
                                   f'or give the float32 export for {precision}')
    if stored == 'f32' and precision == 'int8':
        tool = file_owner(path).export_tool
        raise UnsupportedPrecision(f'{path!r} is a float32 model: precision int8 needs its int8 '
                                   f'copy ({tool} ... --int8 PATH)')
    valid = RUNTIMES[runtime].precisions
    if precision not in valid:
        others = [r.name for r in RUNTIMES.values() if precision in r.precisions]
        raise UnsupportedPrecision(f'precision {precision} with runtime {runtime!r}: it runs '
                                   f'{", ".join(valid)}; {" and ".join(others)} runs '
                                   f'{precision}')
    if precision == 'bf16':
        require_bf16(flags)
    return precision


def describe_run(runtime: str, precision: str) -> str:
    """What every deployed run prints: runtime, precision and CPU."""
    return f'runtime {runtime}, precision {precision}, CPU {describe_cpu()}'


def ort_session(model: Union[str, bytes], device: str = 'cpu', threads: Optional[int] = None,
                optimise: bool = True, optimised_file: Optional[str] = None, providers=None):
    """An ONNX Runtime session for ``model`` (path or bytes), the one way this project opens
    one: ``threads`` intra-op threads (default: torch's setting), all graph optimisations
    (``optimise=False``: none; ``optimised_file``: the optimised graph written there), on
    ``device`` (``providers``: these instead)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimise \
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if optimised_file:
        options.optimized_model_filepath = optimised_file
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # no warnings about initializers / shape inference
    # spinning pool threads slow whatever runs next (docs/deployment.md)
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
    """A model file compiled once per thread count (``threads=None``: torch's setting at each
    call). ``resize_mode``: the coordinate mode of the final resize cut off a segmentor's graph
    (``low_resolution``; None: nothing cut). Subclasses ``read`` the file, ``compile`` it for n
    threads, give its input and output ``names`` and ``infer`` a feed."""
    resize_mode = None

    def __init__(self, path: str, threads: Optional[int] = None, low_resolution: bool = False):
        self.path, self.threads, self._compiled = os.fspath(path), threads, {}
        self.model = self.read(low_resolution)
        self.input_names, self.output_names = self.names(self.compiled())
        self.input_name = self.input_names[0]

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
        self.device = device
        super().__init__(onnx_file, threads, low_resolution)

    def read(self, low_resolution: bool):
        if not low_resolution:
            return self.path
        import onnx
        graph = onnx.load(self.path)
        self.resize_mode = cut_final_resize_onnx(graph)
        return self.path if self.resize_mode is None else graph.SerializeToString()

    def names(self, session):
        return [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]

    def compile(self, threads: int):
        return ort_session(self.model, self.device, threads)

    def infer(self, session, feed):
        return session.run(None, feed)


register_runtime(RuntimeSpec(
    'onnxruntime', ('.onnx', ), ('f32', 'int8'),
    open=lambda path, precision, device, threads, low_resolution: OnnxSessions(
        path, device, threads, low_resolution),
    check=check_onnx_file, precision_of=onnx_precision, export_tool='tools/export_onnx.py',
    install='make install-deploy', cuda=True))
