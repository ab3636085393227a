"""Static int8 quantisation (QDQ) of an exported graph for ONNX Runtime on CPU, calibrated on
the config's val images: weights int8 per output channel (7-bit where the CPU has no VNNI,
``reduce_range``), activations uint8 per tensor, only ``QUANTIZED_OPS`` quantised
(docs/deployment.md, "int8: the fastest CPU path").
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
    """Give every Conv / Gemm / MatMul its own copies of the constant tensors it reads (in
    place): ONNX Runtime leaves a quantised Conv whose (shared) tensors are not its own in
    float32, and torch's exporter stores equal tensors once (docs/deployment.md)."""
    import onnx
    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    # Identity(constant) -> the constant itself (ONNX Runtime drops the unused Identity)
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
    into one ONNX Runtime ``com.microsoft.Gelu`` node (in place; ONNX Runtime's own fusion);
    returns how many. ONNX Runtime fuses them in a float graph but not in a quantised one
    (docs/deployment.md)."""
    from onnx import TensorProto, helper
    from onnxruntime.transformers.fusion_gelu import FusionGelu
    from onnxruntime.transformers.onnx_model import OnnxModel
    graph = model.graph
    before = {n.output[0] for n in graph.node if n.op_type == 'Gelu'}
    wrapped = OnnxModel(model)
    FusionGelu(wrapped).apply()
    gelus = [n for n in graph.node if n.op_type == 'Gelu' and n.output[0] not in before]
    if not gelus:
        return 0
    wrapped.topological_sort()
    for node in gelus:  # typed, so that the calibrator collects their ranges
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
    """Write ``dst``: ``src`` statically quantised to int8 (QDQ), activation ranges calibrated
    on ``feeds`` (the graph's inputs), GELUs fused (``fuse_gelu``). ``reduce_range``: 7-bit
    weights (default: ``default_reduce_range``). Returns what runs in int8 after ONNX
    Runtime's graph optimisation (``int8_coverage``) and the weight range chosen."""
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
    weights = describe_reduce_range(reduce_range)
    onnx.helper.set_model_props(quantised, dict(metadata, **{
        'mmrepvit.quantization': (
            f'int8 static (QDQ; weights per channel, activations uint8, min-max over '
            f'{len(feeds)} calibration inputs; {weights})'),
        'mmrepvit.quantized_on': cpu_model(),
        'mmrepvit.reduce_range': str(bool(reduce_range))}))
    onnx.save(quantised, dst)
    return dict(path=dst, calibration_inputs=len(feeds), fused_gelus=gelus,
                reduce_range=bool(reduce_range), weights=weights, **int8_coverage(dst))


@contextlib.contextmanager
def calibration_threads(threads: Optional[int] = None):
    """While quantising, onnxruntime's calibrator opens its session with ``ort_session``
    (``threads``, no spinning) instead of default options (every core, spinning threads).
    Undone on exit; left alone if the installed onnxruntime calibrates differently."""
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
    ...) and in float after its graph optimisations."""
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
    """The config's ``split`` dataset (without its pipeline unless ``pipeline``) and the indices
    of ``count`` samples spread evenly over it, for int8 calibration. Errors name what is
    missing."""
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
    set, through its pipeline and the model's data preprocessor (``img_shape`` too where the
    graph takes it)."""
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
    """Calibration inputs from synthetic images, for timing an int8 graph where no dataset is
    at hand (the ranges, so the accuracy, are not those of real images)."""
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
