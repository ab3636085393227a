"""Static int8 quantisation of an exported graph, for ONNX Runtime on CPU.

In float32 ONNX Runtime already runs this project's convolutions close to the CPU's
arithmetic peak (docs/deployment.md), so int8 is the one lever left. It changes the outputs:
a quantised model is a file of its own, calibrated on real images of the config's validation
set, and its accuracy is measured (``tools/test.py CONFIG model_int8.onnx``), not assumed.

Weights are quantised per output channel (int8, symmetric), activations per tensor (uint8,
min / max over the calibration images); only the operators that carry the multiply-adds
(``QUANTIZED_OPS``) are quantised, so NMS, RoiAlign, resizing and the box arithmetic stay float.

On an x86 CPU without VNNI (``utils.cpu.INT8_DOT_FLAGS``), the int8 kernels of ONNX Runtime
and OpenVINO multiply uint8 activations by int8 weights in pairs summed into 16 bits
(``pmaddubsw``), which saturates: 2 x 255 x 127 > 32767. Weights quantised to 7 bits
(``reduce_range``) keep every pair sum in range; it is chosen from the CPU's flags unless
given, and recorded in the file's metadata (``mmrepvit.quantization``).
"""
import contextlib
import importlib
import os.path as osp
import tempfile
from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

from ..config import toolbox_of
from ..datasets.checks import check_dataset_paths
from ..model_variants import synthetic_batch
from ..utils.cpu import INT8_DOT_FLAGS, cpu_model, has_int8_dot
from .runtime import ort_session

QUANTIZED_OPS = ('Conv', 'MatMul', 'Gemm')
WEIGHT_INPUTS = ('Conv', 'ConvTranspose', 'Gemm', 'MatMul')


def own_initializers(model):
    """Give every Conv / Gemm / MatMul its own copies of the constant tensors it reads (in place).

    torch's exporter stores equal tensors once (the zero biases of a freshly initialised FPN,
    RPN and mask head), and ONNX Runtime fuses a quantised Conv into one int8 ``QLinearConv``
    only when its ``DequantizeLinear`` inputs are its own: with shared biases, those
    convolutions stay in float32 (docs/deployment.md)."""
    import onnx
    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    # Identity(constant) -> the constant itself (the Identity, unused then, is ONNX
    # Runtime's to drop)
    alias = {n.output[0]: n.input[0] for n in graph.node
             if n.op_type == 'Identity' and n.input[0] in constants
             and n.output[0] not in outputs}
    seen = set()
    for node in graph.node:
        for k, name in enumerate(node.input):
            name = alias.get(name, name)
            node.input[k] = name
            if name not in constants or node.op_type not in WEIGHT_INPUTS:
                continue
            if name in seen:
                copy = onnx.TensorProto()
                copy.CopyFrom(constants[name])
                copy.name = f'{name}.{node.name or len(graph.initializer)}'
                graph.initializer.append(copy)
                node.input[k] = copy.name
            seen.add(name)
    return model


def fuse_gelu(model):
    """Rewrite every exact GELU, exported as ``0.5 * x * (1 + erf(x / sqrt(2)))`` (five ops),
    into one ONNX Runtime ``com.microsoft.Gelu`` node (in place); returns how many.

    ONNX Runtime fuses these itself in a float graph, but not in a quantised one: there each
    consumer of ``x`` gets its own DequantizeLinear, so the pattern no longer matches, and the
    five ops would run one by one (docs/deployment.md measures the cost)."""
    from onnx import TensorProto, helper, numpy_helper
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == 'Constant' and node.attribute and node.attribute[0].name == 'value':
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    outputs = {o.name for o in graph.output}

    def is_constant(name, value):
        c = constants.get(name)
        return c is not None and c.size == 1 and abs(float(c.reshape(())) - value) < 1e-5

    def sole_consumer(name, op_type):
        users = consumers.get(name, [])
        if len(users) == 1 and users[0].op_type == op_type and name not in outputs:
            return users[0]
        return None

    replaced, gelus = set(), {}
    for erf in graph.node:
        div = producer.get(erf.input[0]) if erf.op_type == 'Erf' else None
        if div is None or div.op_type != 'Div' or not is_constant(div.input[1], 2 ** 0.5) \
                or sole_consumer(div.output[0], 'Erf') is None:
            continue
        x = div.input[0]
        add = sole_consumer(erf.output[0], 'Add')
        if add is None or not any(is_constant(i, 1.0) for i in add.input):
            continue
        times_x = sole_consumer(add.output[0], 'Mul')
        if times_x is None or x not in times_x.input:
            continue
        half = sole_consumer(times_x.output[0], 'Mul')
        if half is None or not any(is_constant(i, 0.5) for i in half.input):
            continue
        replaced.update(id(n) for n in (div, erf, add, times_x))
        gelus[id(half)] = helper.make_node('Gelu', [x], [half.output[0]], domain='com.microsoft',
                                           name=f'{half.name or half.output[0]}/Gelu')
    if not gelus:
        return 0
    nodes = [gelus.get(id(n), n) for n in graph.node if id(n) not in replaced]
    del graph.node[:]
    graph.node.extend(nodes)
    for node in gelus.values():  # typed, so that the calibrator collects their ranges
        graph.value_info.append(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT,
                                                              None))
    if not any(o.domain == 'com.microsoft' for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid('com.microsoft', 1))
    return len(gelus)


def default_reduce_range(flags=None) -> bool:
    """7-bit weights where the CPU sums int8 products in saturating 16-bit pairs (no VNNI)."""
    return not has_int8_dot(flags)


def describe_reduce_range(reduce_range: bool) -> str:
    """What a quantised file's weights are, and why, in words (metadata and printouts)."""
    if reduce_range:
        return (f'weights 7-bit (reduce_range: int8 kernels without '
                f'{" / ".join(INT8_DOT_FLAGS)} sum u8 x s8 pairs in 16 bits, which 8-bit '
                f'weights can saturate)')
    return 'weights 8-bit (reduce_range off: for CPUs with int8 dot products, VNNI)'


def quantize_onnx(src: str, dst: str, feeds: Sequence[Dict[str, np.ndarray]],
                  reduce_range: Optional[bool] = None) -> Dict:
    """Write ``dst``: ``src`` statically quantised to int8 (QDQ format), activation ranges
    calibrated on ``feeds`` (the graph's inputs, as the deployed model is fed), GELUs as
    ONNX Runtime's fused op (``fuse_gelu``; the file is for ONNX Runtime). ``reduce_range``:
    7-bit weights (default: where this CPU has no VNNI, ``default_reduce_range``). Returns
    what ran in int8 after ONNX Runtime's graph optimisation (``int8_coverage``) and the
    weight range chosen."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    if not feeds:
        raise ValueError('int8 calibration needs at least one input')
    if reduce_range is None:
        reduce_range = default_reduce_range()

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter(feeds)

        def get_next(self):
            return next(self.feeds, None)

    model = own_initializers(onnx.load(src))
    gelus = fuse_gelu(model)
    metadata = {p.key: p.value for p in model.metadata_props}
    with tempfile.TemporaryDirectory(prefix='mmrepvit_int8_') as tmp, calibration_threads():
        own = osp.join(tmp, 'float.onnx')
        onnx.save(model, own)
        quantize_static(own, dst, Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        reduce_range=bool(reduce_range))
    quantised = onnx.load(dst)
    del quantised.metadata_props[:]
    weights = describe_reduce_range(reduce_range)
    for key, value in dict(metadata, **{
            'mmrepvit.quantization': (
                f'int8 static (QDQ; weights per channel, activations uint8, min-max over '
                f'{len(feeds)} calibration inputs; {weights})'),
            'mmrepvit.quantized_on': cpu_model(),
            'mmrepvit.reduce_range': str(bool(reduce_range))}).items():
        entry = quantised.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(quantised, dst)
    return dict(path=dst, calibration_inputs=len(feeds), fused_gelus=gelus,
                reduce_range=bool(reduce_range), weights=weights, **int8_coverage(dst))


@contextlib.contextmanager
def calibration_threads(threads: Optional[int] = None):
    """While quantising, onnxruntime's calibrator runs its session with ``threads`` intra-op
    threads (default: torch's setting) and without thread spinning.

    It opens that session with default options: every core, and pool threads that keep
    spinning after each run, which starve every other process on a small machine. Undone on
    exit; left alone if the installed onnxruntime calibrates differently."""
    from onnxruntime.quantization import calibrate
    base = getattr(calibrate, 'CalibraterBase', None)
    original = getattr(base, 'create_inference_session', None)
    if original is None:
        yield
        return

    def create_inference_session(self):
        self.infer_session = ort_session(self.augmented_model_path, threads=threads,
                                         optimise=False, providers=self.execution_providers)

    base.create_inference_session = create_inference_session
    try:
        yield
    finally:
        base.create_inference_session = original


def int8_coverage(path: str) -> Dict:
    """How many convolutions / matrix products ONNX Runtime runs in int8 (``QLinearConv``,
    ``QGemm``, ...) and how many it still runs in float after its graph optimisations."""
    import onnx
    with tempfile.TemporaryDirectory(prefix='mmrepvit_int8_') as tmp:
        optimised = osp.join(tmp, 'optimised.onnx')
        ort_session(path, threads=1, optimised_file=optimised)  # only optimised, never run
        ops = Counter(n.op_type for n in onnx.load(optimised).graph.node)
    return dict(int8_ops={op: n for op, n in ops.items()
                          if op in ('QLinearConv', 'QGemm', 'QLinearMatMul', 'MatMulInteger',
                                    'ConvInteger')},
                float_ops={op: ops[op] for op in QUANTIZED_OPS if ops[op]})


def graph_inputs(path: str) -> List[str]:
    """The names of the graph's inputs (initializers listed as inputs left out)."""
    import onnx
    graph = onnx.load(path, load_external_data=False).graph
    constants = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in constants]


def calibration_set(cfg, count: int, split: str = 'val', pipeline: bool = True):
    """The config's ``split`` dataset (without its pipeline unless ``pipeline``: paths only)
    and the indices of ``count`` samples spread evenly over it: what int8 calibration reads,
    for ONNX Runtime and ExecuTorch alike. Errors name what is missing."""
    if count < 1:
        raise ValueError(f'{count} calibration images: int8 calibration needs at least 1 image')
    loader = cfg.get(f'{split}_dataloader')
    if not loader or not loader.get('dataset'):
        raise ValueError(f'the config has no {split}_dataloader.dataset to calibrate on')
    check_dataset_paths(cfg, splits=(split, ))
    scope = toolbox_of(cfg)
    init_default_scope(scope)
    registry = importlib.import_module(f'{scope}.registry')
    dataset_cfg = loader['dataset'] if pipeline else dict(loader['dataset'], pipeline=[])
    dataset = registry.DATASETS.build(dataset_cfg)
    return dataset, sorted({int(i) for i in np.linspace(0, len(dataset) - 1, count).round()})


def dataset_feeds(cfg, input_names: Sequence[str], num_images: int = 32,
                  split: str = 'val') -> List[Dict[str, np.ndarray]]:
    """The graph's inputs for ``num_images`` images spread evenly over the config's ``split``
    set: that dataset's pipeline, then the model's data preprocessor, one image each (plus its
    unpadded ``img_shape`` where the graph takes it)."""

    dataset, picks = calibration_set(cfg, num_images, split)
    registry = importlib.import_module(f'{toolbox_of(cfg)}.registry')
    preprocessor = registry.MODELS.build(cfg.model.data_preprocessor)
    feeds = []
    with torch.no_grad():
        for i in picks:
            data = preprocessor(pseudo_collate([dataset[i]]), False)
            feeds.append(_feed(data, input_names))
    return feeds


def synthetic_feeds(model, kind: str, size, input_names: Sequence[str], count: int = 4,
                    ) -> List[Dict[str, np.ndarray]]:
    """Calibration inputs from synthetic images (``model_variants.synthetic_batch``): for
    timing an int8 graph where no dataset is at hand; the ranges, so the accuracy, are not
    those of real images."""

    feeds = []
    with torch.no_grad():
        for seed in range(count):
            batch = synthetic_batch(kind, size, seed=seed)
            if kind == 'backbone':
                feeds.append({input_names[0]: batch.numpy()})
            else:
                feeds.append(_feed(model.data_preprocessor(batch, False), input_names))
    return feeds


def _feed(data: dict, input_names: Sequence[str]) -> Dict[str, np.ndarray]:
    feed = {input_names[0]: data['inputs'][:1].numpy().astype(np.float32)}
    if 'img_shape' in input_names:
        feed['img_shape'] = np.array(data['data_samples'][0].img_shape[:2], dtype=np.int64)
    return feed
