"""ExecuTorch programs (``.pte``) for phone apps, exported fused and lowered to XNNPACK in f32
or int8, their contract stored as constant methods: the segmentor app program
(``SegmentorApp``: uint8 RGB [H, W, 3] in, int32 classes [H, W] out, the config's test-time
image steps inside) and backbone / classifier programs (a normalised float32 (1, 3, H, W)
in). docs/deployment.md, "On the device (ExecuTorch)", describes them.
"""
import copy
import json
import os
import os.path as osp
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import mmcv
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.export import Dim, export

from ..config import default_dataset_meta
from ..fusion import fuse_model
from ..model_variants import build_target, load_target_config
from ..utils.timing import paired_ratios, summarize, time_interleaved
from .executorch_runtime import (
    CONTRACT_VERSION,
    DEFAULT_MAX_SIZE,
    DEFAULT_MIN_SIZE,
    PRECISIONS,
    ceil_to,
    image_steps,
    keep_ratio_size,
    load_program,
    require_executorch,
)
from .export import SegmentorLogits, load_model, make_traceable
from .quantize import calibration_set
from .seg_postprocess import upscale_argmax


def same_size(size, other) -> bool:
    """Whether two sizes are equal and fixed (plain ints, not symbols of a dynamic export)."""
    return all(isinstance(a, int) and isinstance(b, int) and a == b
               for a, b in zip(size, other))


class ClassesLastLogits(nn.Module):
    """An encoder-decoder segmentor's low-resolution logits classes last, (1, h, w, K): the
    decode head's 1x1 ``conv_seg`` as a matrix product on channels-last pixels, so XNNPACK's
    features (int8 in an int8 program) are transposed once, not the float logits twice.
    ``of``: this module for a segmentor, if it fits."""

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        head = copy.copy(segmentor.decode_head)
        head._modules = dict(head._modules)  # the copy's own conv_seg, the rest shared
        conv, head.conv_seg = head.conv_seg, nn.Identity()
        self.backbone, self.head = segmentor.backbone, head
        self.neck = segmentor.neck if segmentor.with_neck else None
        self.classes = nn.Linear(conv.in_channels, conv.out_channels)
        self.classes.weight.data = conv.weight.data.flatten(1)
        self.classes.bias.data = conv.bias.data

    @classmethod
    def of(cls, segmentor: nn.Module) -> Optional[nn.Module]:
        """The module for ``segmentor`` if it is an encoder-decoder whose head ends in a 1x1
        ``conv_seg`` and it gives the segmentor's own logits on a test image; else None."""
        from mmseg.models.segmentors import CascadeEncoderDecoder, EncoderDecoder
        conv = getattr(segmentor.decode_head, 'conv_seg', None)
        if (not isinstance(segmentor, EncoderDecoder)
                or isinstance(segmentor, CascadeEncoderDecoder)
                or not isinstance(conv, nn.Conv2d) or conv.kernel_size != (1, 1)
                or conv.groups != 1 or conv.bias is None):
            return None
        module, training = cls(segmentor), segmentor.training
        x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
        try:
            with torch.no_grad():
                segmentor.eval()
                same = torch.allclose(module(x), segmentor._forward(x).permute(0, 2, 3, 1),
                                      rtol=1e-4, atol=1e-4)
        except RuntimeError:  # the head's forward does not take features for conv_seg
            same = False
        finally:
            segmentor.train(training)
        return module if same else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        if self.neck is not None:
            features = self.neck(features)
        return self.classes(self.head(features).permute(0, 2, 3, 1))


class SegmentorApp(nn.Module):
    """The segmentor as an app calls it: uint8 RGB image [H, W, 3] -> int32 classes [H, W].
    ``steps``: ``image_steps`` of the config."""

    def __init__(self, segmentor: nn.Module, steps: Dict):
        super().__init__()
        # low-resolution logits, classes last (1, h, w, K)
        network = ClassesLastLogits.of(segmentor)
        self.classes_last = network is not None
        self.network = make_traceable(network or SegmentorLogits(segmentor, resize=False))
        self.steps = steps
        self.register_buffer('mean', torch.tensor(steps['mean']).view(1, 3, 1, 1))
        self.register_buffer('std', torch.tensor(steps['std']).view(1, 3, 1, 1))
        self.align_corners = segmentor.align_corners
        head = segmentor.decode_head
        self.threshold = getattr(head, 'threshold', None) or 0.3
        self.binary = getattr(head, 'out_channels', 2) == 1

    def prepare(self, image: torch.Tensor) -> Tuple[torch.Tensor, Tuple]:
        """The network's input (1, 3, h, w) for ``image`` and its size before padding."""
        # to float before the layout change: XNNPACK transposes float32, not uint8
        x = image.float().permute(2, 0, 1).unsqueeze(0)
        if self.steps['bgr']:
            x = x.flip(1)
        for step in self.steps['resizes']:
            size_h, size_w = x.shape[2], x.shape[3]
            if step[0] == 'keep_ratio':
                size = keep_ratio_size(size_h, size_w, step[1], step[2])
            elif step[0] == 'fixed':
                size = (step[1], step[2])
            else:
                size = (ceil_to(size_h, step[1]), ceil_to(size_w, step[1]))
            if same_size(size, (size_h, size_w)):
                continue  # a fixed image already of this size: the resize is a no-op
            # as OpenCV resizes a uint8 image: bilinear, back to whole 8-bit values
            x = round_pixels(F.interpolate(x, size=size, mode='bilinear',
                                           align_corners=False))
        x = (x - self.mean) / self.std
        net_h, net_w = x.shape[2], x.shape[3]
        pad_size, divisor = self.steps['pad_size'], self.steps['pad_divisor']
        if pad_size or divisor:
            pad_h, pad_w = pad_size or (ceil_to(net_h, divisor), ceil_to(net_w, divisor))
            x = F.pad(x, (0, pad_w - net_w, 0, pad_h - net_h), value=self.steps['pad_val'])
        return x, (net_h, net_w)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[0], image.shape[1]
        x, (net_h, net_w) = self.prepare(image)
        low = self.network(x)  # (1, h, w, K)
        if not self.classes_last:
            low = low.permute(0, 2, 3, 1)
        size = x.shape[2:]
        factor = size[0] // low.shape[1] if same_size(size, (net_h, net_w)) else 0
        if (not self.binary and not self.align_corners and same_size((net_h, net_w), (h, w))
                and same_size(size, (low.shape[1] * factor, low.shape[2] * factor))):
            # fixed size, no padding or second resize, whole-number scale: no full-size logits
            return upscale_argmax(low[0], factor).to(torch.int32)
        logits = F.interpolate(low.permute(0, 3, 1, 2), size=size, mode='bilinear',
                               align_corners=self.align_corners)
        if not same_size(size, (net_h, net_w)):
            logits = logits[:, :, :net_h, :net_w]
        if not same_size((net_h, net_w), (h, w)):
            logits = F.interpolate(logits, size=(h, w), mode='bilinear',
                                   align_corners=self.align_corners)
        if self.binary:
            return (logits[0, 0].sigmoid() > self.threshold).to(torch.int32)
        # classes last: each pixel's logits contiguous for the argmax (5x faster than over K)
        return logits.permute(0, 2, 3, 1).argmax(-1)[0].to(torch.int32)


def export_module(module: nn.Module, example: torch.Tensor,
                  dynamic_axes: Optional[Dict[int, Tuple]] = None):
    """``torch.export`` of ``module`` (one tensor in) with the axes of ``dynamic_axes``
    (axis -> (name, min, max)) dynamic, the others (and those of one size) fixed at
    ``example``'s."""
    shapes = ({axis: Dim(name, min=low, max=high)
               for axis, (name, low, high) in (dynamic_axes or {}).items() if low < high}, )
    with torch.no_grad():
        try:
            return export(module, (example, ), dynamic_shapes=shapes)
        except torch._dynamo.exc.UserError as error:  # a size range the model cannot take
            raise ValueError(f'the model cannot be exported for every size in '
                             f'{dict(dynamic_axes)} (axis: name, min, max): '
                             f'{str(error).splitlines()[1].strip()}') from error


def nearest_upsampling_as_copies(graph: torch.fx.GraphModule) -> int:
    """Rewrite in place each nearest upsampling of ``graph`` (an ATen graph of fixed sizes)
    by whole factors as copies XNNPACK runs (it has no nearest resize; the portable kernel is
    single-threaded): concatenations of views, the same values, int8 where the input is.
    Returns how many (docs/deployment.md, "The FPN's nearest upsampling inside XNNPACK")."""
    ops = torch.ops.aten
    count = 0
    for node in list(graph.graph.nodes):
        if node.target not in (ops.upsample_nearest2d.vec, ops.upsample_nearest2d.default):
            continue
        x = node.args[0]
        (n, c, h, w), (_, _, out_h, out_w) = x.meta['val'].shape, node.meta['val'].shape
        if not all(isinstance(v, int) for v in (h, w, out_h, out_w)) or out_h % h or out_w % w:
            continue
        with graph.graph.inserting_before(node):
            def copies(y, shape, times, dim):  # ``times`` separate views: XNNPACK
                views = [graph.graph.call_function(ops.reshape.default, (y, shape))
                         for _ in range(times)]  # concatenates distinct inputs only
                return (graph.graph.call_function(ops.cat.default, (views, dim))
                        if times > 1 else views[0])
            y = graph.graph.call_function(ops.permute.default, (x, [0, 2, 3, 1]))
            y = copies(y, [n * h, w, 1, c], out_w // w, 2)  # each pixel along its row
            y = copies(y, [n, h, 1, out_w * c], out_h // h, 2)  # each row
            y = graph.graph.call_function(ops.reshape.default, (y, [n, out_h, out_w, c]))
            y = graph.graph.call_function(ops.permute.default, (y, [0, 3, 1, 2]))
        node.replace_all_uses_with(y)
        graph.graph.erase_node(node)
        count += 1
    graph.recompile()
    return count


def network_graph(module: nn.Module, example: torch.Tensor,
                  dynamic: bool = False) -> torch.fx.GraphModule:
    """``module`` (one (N, C, H, W) tensor in) as the ATen graph ``torch.export`` traces
    at ``example``, its height and width symbolic with ``dynamic``; at fixed sizes its
    nearest upsampling as copies XNNPACK runs (``nearest_upsampling_as_copies``)."""
    shapes = ({2: Dim.AUTO, 3: Dim.AUTO}, ) if dynamic else None
    with torch.no_grad():
        graph = export(module, (example, ), dynamic_shapes=shapes).module()
        if not dynamic and nearest_upsampling_as_copies(graph):
            # traced again: the new nodes' shapes and dtypes, which the quantiser reads
            graph = export(graph, (example, )).module()
    return graph


def observed_module(module: nn.Module, example: torch.Tensor,
                    dynamic: bool = False) -> nn.Module:
    """``module`` prepared for int8 (XNNPACK's quantiser: weights per output channel,
    symmetric; activations per tensor): its graph (``network_graph``) with observers that
    record activation ranges as it runs; ``quantized`` then gives the int8 module."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True))
    return prepare_pt2e(network_graph(module, example, dynamic), quantizer)


def quantized(observed: nn.Module) -> nn.Module:
    """The int8 module of an ``observed_module`` that has run on calibration inputs."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e
    return convert_pt2e(observed)


def quantize_module(module: nn.Module, example: torch.Tensor,
                    calibration: Iterable[torch.Tensor], dynamic: bool = False) -> nn.Module:
    """``module`` quantised to int8 for XNNPACK, activation ranges observed on
    ``calibration`` (inputs like ``example``). ``dynamic``: traced with its input's height
    and width symbolic, so that it takes any size (traced at one, it keeps that size)."""
    calibration = list(calibration)
    if not calibration:
        raise ValueError('int8 calibration needs at least one input')
    observed = observed_module(module, example, dynamic)
    with torch.no_grad():
        for sample in calibration:
            observed(sample)
    return quantized(observed)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f'precision={precision!r}: an ExecuTorch program is one of '
                         f'{", ".join(PRECISIONS)}')
    return precision


def write_program(path: str, exported, **contract) -> Dict:
    """Write ``exported`` lowered to XNNPACK to ``path``, ``contract`` (and
    ``contract_version``) as constant methods; returns the contract."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower
    contract = dict(contract_version=CONTRACT_VERSION, **contract)
    # the edge checker refuses torch.sym_min / sym_max, which the emitter maps to size ops
    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()],
                                       constant_methods=contract,
                                       compile_config=EdgeCompileConfig(
                                           _check_ir_validity=False))
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(edge.to_executorch().buffer)
    return contract


def app_contract(config: str, cfg, model: nn.Module, precision: str, steps: Dict) -> Dict:
    """The contract entries every app program (uint8 RGB HWC image in) of ``config`` has."""
    return dict(input_layout='HWC', input_dtype='uint8', input_channels='RGB',
                class_names=class_names(cfg, model), precision=precision,
                config_name=osp.basename(config), image_steps=json.dumps(steps))


def planned_memory_mb(path: str) -> float:
    """The memory ExecuTorch plans for ``forward``'s activations (MiB): allocated when the
    method is loaded, sized for ``max_size`` (weights and XNNPACK's own buffers come on top)."""
    from executorch.exir._serialize._program import deserialize_pte_binary
    with open(path, 'rb') as f:
        program = deserialize_pte_binary(f.read())
    program = getattr(program, 'program', program)
    plan = next(p for p in program.execution_plan if p.name == 'forward')
    return sum(plan.non_const_buffer_sizes) / 2**20


def check_size_range(min_size, max_size, example: Sequence[int]) -> None:
    """ValueError unless 0 < ``min_size`` <= ``max_size`` and the export size ``example``
    lies between them (each an int for every axis, or one per axis)."""
    lows, highs = ([s] * len(example) if isinstance(s, int) else list(s)
                   for s in (min_size, max_size))
    if not all(0 < a <= b for a, b in zip(lows, highs)):
        raise ValueError(f'min_size={min_size}, max_size={max_size}: need 0 < min <= max')
    if not all(a <= s <= b for a, s, b in zip(lows, example, highs)):
        raise ValueError(f'export size {tuple(example)} is not within min_size={min_size} '
                         f'and max_size={max_size}')


def export_segmentor_program(config: str, path: str, checkpoint: Optional[str] = None,
                             precision: str = 'f32', calib_images: int = 32,
                             min_size: int = DEFAULT_MIN_SIZE, max_size: int = DEFAULT_MAX_SIZE,
                             export_size: Tuple[int, int] = (256, 320),
                             cfg_options: Optional[dict] = None, model: Optional[nn.Module] = None,
                             calibration: Optional[Iterable[torch.Tensor]] = None,
                             check_sizes: Optional[Sequence[Tuple[int, int]]] = None,
                             time_repeats: int = 0, fixed: bool = False) -> Dict:
    """Write the app program of the segmentor of ``config`` (``SegmentorApp``) to ``path`` in
    ``precision``: any H and W in [``min_size``, ``max_size``], or with ``fixed`` the
    ``export_size`` alone (no full-size logits where the test pipeline keeps that size).
    Returns its contract and ``checks`` (``check_program``: the program against the float32
    PyTorch app module at ``check_sizes``, default the export size and another, timed with
    ``time_repeats``). ``model``: this segmentor (fused here) instead of one built from
    ``checkpoint`` (random weights without either). int8: calibrated on ``calib_images`` val
    images, or on ``calibration`` (uint8 RGB HWC images)."""
    require_executorch()
    cfg = load_target_config(config, cfg_options)
    if not fixed:
        check_size_range(min_size, max_size, export_size)
    model = load_model(config, checkpoint, cfg_options) if model is None else \
        fuse_model(model.eval())
    steps = image_steps(cfg)
    app = SegmentorApp(model, steps).eval()
    example = torch.zeros(*export_size, 3, dtype=torch.uint8)
    sizes = [list(export_size)] * 2 if fixed else [[min_size] * 2, [max_size] * 2]
    if check_precision(precision) == 'int8':
        calibration = val_images(cfg, calib_images) if calibration is None else calibration
        inputs = [app.prepare(resize_image(image, export_size))[0] for image in calibration]
        app.network = quantize_module(app.network, app.prepare(example)[0], inputs,
                                      dynamic=not fixed)
    elif fixed:
        app.network = network_graph(app.network, app.prepare(example)[0])
    exported = export_module(app, example, None if fixed else {
        0: ('height', min_size, max_size), 1: ('width', min_size, max_size)})
    contract = write_program(path, exported, kind='segmentor', min_size=sizes[0],
                             max_size=sizes[1], output_names=['classes'],
                             **app_contract(config, cfg, model, precision, steps))
    checked = check_sizes or ([export_size] if fixed else
                              [export_size, other_size(export_size, min_size, max_size)])
    app = SegmentorApp(model, steps).eval()  # checked against float32 PyTorch
    return dict(path=path, contract=contract, planned_mb=planned_memory_mb(path),
                checks=check_program(path, app, [synthetic_image(size, seed)
                                                 for seed, size in enumerate(checked)],
                                     time_repeats))


def round_pixels(x: torch.Tensor) -> torch.Tensor:
    """Resized pixel values back to whole 8-bit levels as OpenCV's uint8 resize does, exact
    halves up (a bilinear downscale makes many); the 1e-3 margin rounds alike the halves that
    float arithmetic leaves a hair below, in PyTorch and in XNNPACK."""
    return (x + (0.5 + 1e-3)).floor().clamp(0, 255)


def resize_image(image: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """A uint8 [H, W, 3] image resized (bilinear) to ``size`` (h, w)."""
    if tuple(image.shape[:2]) == tuple(size):
        return image
    x = F.interpolate(image.permute(2, 0, 1)[None].float(), size=tuple(size), mode='bilinear',
                      align_corners=False)
    return round_pixels(x[0].permute(1, 2, 0)).to(torch.uint8).contiguous()


def synthetic_image(size: Sequence[int], seed: int = 0) -> torch.Tensor:
    """A smooth uint8 RGB image [H, W, 3] (random 8 x 8 colours, resized): classes in
    regions, as in a photograph, rather than pixel noise."""
    g = torch.Generator().manual_seed(seed)
    small = torch.randint(0, 256, (1, 3, 8, 8), generator=g).float()
    image = F.interpolate(small, size=tuple(size), mode='bilinear', align_corners=False)
    return image[0].permute(1, 2, 0).round().to(torch.uint8).contiguous()


def other_size(size: Sequence[int], min_size: int, max_size: int) -> Tuple[int, int]:
    """A size within [min_size, max_size] other than ``size``, of another aspect ratio:
    where a dynamic-shape program is checked besides its export size."""
    h, w = size
    return (max(min_size, min(max_size, h * 3 // 4 + 1)),
            max(min_size, min(max_size, w * 5 // 4 + 3)))


def check_program(path: str, module: nn.Module, inputs: Sequence[torch.Tensor],
                  time_repeats: int = 0) -> List[Dict]:
    """Run the program at ``path`` (``executorch.runtime``) and ``module`` (PyTorch) on each
    of ``inputs``: per input its size and the outputs' agreement (class maps: the fraction of
    equal elements; float: the largest absolute difference), and with ``time_repeats`` both
    timed interleaved (``timing``: median / best ms, the per-round speed-up)."""
    forward = load_program(path)[0].load_method('forward')
    checks = []
    for x in inputs:
        with torch.no_grad():
            expected = module(x)
        expected = list(expected) if isinstance(expected, (list, tuple)) else [expected]
        got = list(forward.execute([x]))
        shapes = [[list(o.shape) for o in outputs] for outputs in (got, expected)]
        if shapes[0] != shapes[1]:
            raise AssertionError(f'{path}: output shapes {shapes[0]}, PyTorch {shapes[1]}')
        check = dict(size=list(x.shape[:2] if x.ndim == 3 else x.shape[2:]),
                     output_shapes=shapes[0])
        if expected[0].is_floating_point():
            check['max_abs_diff'] = max(float((a - b).abs().max()) for a, b in zip(got, expected))
        else:
            check['agree'] = float(sum((a == b).sum() for a, b in zip(got, expected)) /
                                   sum(a.numel() for a in got))
        if time_repeats:
            check['timing'] = time_against(forward, module, x, time_repeats)
        checks.append(check)
    return checks


def time_against(forward, module: nn.Module, x: torch.Tensor, repeats: int) -> Dict:
    """The program's ``forward`` and PyTorch's ``module`` on ``x``, timed interleaved (after
    3 warm-up calls each)."""

    def pytorch():
        with torch.inference_mode():
            module(x)

    times = time_interleaved(dict(pytorch=pytorch, executorch=lambda: forward.execute([x])),
                             repeats, warmup=3)
    return dict(threads=torch.get_num_threads(),
                **{name: {k: summarize(t)[k] for k in ('median_ms', 'best_ms')}
                   for name, t in times.items()},
                speedup=paired_ratios(times['pytorch'], times['executorch']))


def class_names(cfg, model: nn.Module) -> List[str]:
    """The classes a segmentor or detector predicts: the config's test dataset's names, else
    ``class0``... (as many as its decode head's, or its (RoI head's) box head's classes)."""
    meta = default_dataset_meta(cfg) or {}
    names = [str(c) for c in meta.get('classes') or ()]
    if hasattr(model, 'decode_head'):
        count = model.decode_head.num_classes
    else:
        count = getattr(model, 'roi_head', model).bbox_head.num_classes
    return names if len(names) == count else [f'class{i}' for i in range(count)]


def val_images(cfg, count: int, split: str = 'val') -> List[torch.Tensor]:
    """``count`` images spread evenly over the config's ``split`` set, as an app holds them:
    uint8 RGB [H, W, 3] tensors, read as the dataset's pipeline reads them."""
    dataset, picks = calibration_set(cfg, count, split, pipeline=False)
    return [torch.from_numpy(mmcv.imread(dataset.get_data_info(i)['img_path'],
                                         channel_order='rgb').copy()) for i in picks]


def export_backbone_program(arch: str, path: str, classifier: bool = False,
                            checkpoint: Optional[str] = None, precision: str = 'f32',
                            min_size: int = DEFAULT_MIN_SIZE, max_size: int = DEFAULT_MAX_SIZE,
                            export_size: Tuple[int, int] = (224, 224),
                            calibration: Optional[Iterable[torch.Tensor]] = None,
                            model: Optional[nn.Module] = None,
                            check_sizes: Optional[Sequence[Tuple[int, int]]] = None,
                            time_repeats: int = 0) -> Dict:
    """Write a fused backbone (its feature maps ``feat0``...) or, with ``classifier``, its
    ImageNet model (``logits``) as a program to ``path``: a normalised float32 image
    (1, 3, H, W) in, H and W in [``min_size``, ``max_size``]. int8: ``calibration`` are its
    (normalised) inputs. ``model``: export this module (fused here) instead. Returns the
    contract and ``checks`` (``check_program`` at ``check_sizes``, default two sizes)."""
    require_executorch()
    check_size_range(min_size, max_size, export_size)
    model = build_target(arch, 'fused', classifier=classifier, checkpoint=checkpoint) \
        if model is None else fuse_model(model.eval())
    example = torch.zeros(1, 3, *export_size)
    with torch.no_grad():
        outputs = model(example)
    names = ['logits'] if classifier else [f'feat{i}' for i in range(len(outputs))]
    reference = model
    if check_precision(precision) == 'int8':
        if not calibration:
            raise ValueError('an int8 backbone program needs calibration inputs')
        model = quantize_module(model, example, calibration, dynamic=True)
    exported = export_module(model, example, {2: ('height', min_size, max_size),
                                              3: ('width', min_size, max_size)})
    contract = write_program(path, exported, kind='classifier' if classifier else 'backbone',
                             input_layout='NCHW', input_dtype='float32',
                             input_channels='normalised', min_size=[min_size] * 2,
                             max_size=[max_size] * 2, output_names=names,
                             precision=precision, config_name=arch)
    checked = check_sizes or [export_size, other_size(export_size, min_size, max_size)]
    inputs = [torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(i))
              for i, size in enumerate(checked)]
    return dict(path=path, contract=contract, planned_mb=planned_memory_mb(path),
                checks=check_program(path, reference, inputs, time_repeats))
