"""ONNX export of a fused backbone, or of a fused segmentor's network (image -> logits at the
image's resolution), with dynamic height and width, checked against PyTorch under ONNX
Runtime at several input sizes."""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from .targets import build_target, synthetic_batch, target_kind

OPSET = 17


class SegmentorLogits(nn.Module):
    """A segmentor's ``encode_decode`` without metadata: normalised image (N, 3, H, W) ->
    class logits (N, K, H, W), the decode head's output resized to the input as mmseg does."""

    def __init__(self, segmentor):
        super().__init__()
        self.segmentor = segmentor

    def forward(self, inputs):
        logits = self.segmentor._forward(inputs)
        return F.interpolate(logits, size=inputs.shape[2:], mode='bilinear',
                             align_corners=self.segmentor.align_corners)


class ScaleUpsample(nn.Module):
    """mmseg's ``Upsample`` by a scale factor, without turning the input size into Python
    ints (which the tracer would freeze into the graph): same output, dynamic in ONNX."""

    def __init__(self, upsample):
        super().__init__()
        self.scale_factor = upsample.scale_factor
        self.mode, self.align_corners = upsample.mode, upsample.align_corners

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode,
                             align_corners=self.align_corners)


def make_traceable(module):
    """Swap every size-freezing mmseg ``Upsample`` (scale factor, no fixed size) in place."""
    try:
        from mmseg.models.utils import Upsample
    except ImportError:
        return module
    for name, child in module.named_children():
        if isinstance(child, Upsample) and not child.size and child.scale_factor:
            setattr(module, name, ScaleUpsample(child))
        else:
            make_traceable(child)
    return module


def exportable(spec, cfg_options=None, checkpoint=None):
    """The fused module to export for ``spec`` and its output names."""
    kind = target_kind(spec)
    if kind not in ('backbone', 'mmseg'):
        raise ValueError(f'{spec!r} is a {kind} config; ONNX export covers backbones and '
                         f'segmentors (detectors need their post-processing exported too)')
    model = build_target(spec, 'fused', cfg_options=cfg_options, checkpoint=checkpoint)
    if kind == 'mmseg':
        return SegmentorLogits(model).eval(), ['logits']
    with torch.no_grad():
        n = len(model(synthetic_batch('backbone', (64, 64))))
    return model, [f'feat{i}' for i in range(n)]


def export_onnx(module, path, output_names, size=(224, 224), opset=OPSET):
    """Export ``module`` (one image tensor in, tensors out) with dynamic H and W."""
    example = synthetic_batch('backbone', size)
    axes = {2: 'height', 3: 'width'}
    dynamic = {'input': axes}
    dynamic.update({name: {2: f'{name}_height', 3: f'{name}_width'} for name in output_names})
    with torch.no_grad():
        torch.onnx.export(module, (example, ), path, input_names=['input'],
                          output_names=output_names, dynamic_axes=dynamic,
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    import onnx
    onnx.checker.check_model(onnx.load(path))
    return path


def check_onnx(path, module, sizes, threads=2, seed=1):
    """Run the ONNX file under ONNX Runtime and ``module`` in PyTorch at every size; returns
    ``[{'size', 'max_abs_diff', 'max_abs_output', 'output_shapes'}]`` (worst over the
    outputs; the largest output magnitude puts the difference in scale)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # spinning pool threads would slow the PyTorch runs in between (deployment.runtime)
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    results = []
    for size in sizes:
        x = synthetic_batch('backbone', tuple(size), seed=seed)
        with torch.no_grad():
            expected = module(x)
        expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
        got = session.run(None, {'input': x.numpy()})
        diff = max(float((torch.from_numpy(g) - e).abs().max()) for g, e in zip(got, expected))
        results.append(dict(size=list(size), max_abs_diff=diff,
                            max_abs_output=max(float(e.abs().max()) for e in expected),
                            output_shapes=[list(g.shape) for g in got]))
    return results


def export_and_check(spec, path, export_size=(224, 224), check_sizes=((224, 224), (320, 448)),
                     cfg_options=None, threads=2, checkpoint=None):
    """Export ``spec`` fused to ``path`` and compare ONNX Runtime with PyTorch."""
    module, names = exportable(spec, cfg_options, checkpoint)
    export_onnx(make_traceable(copy.deepcopy(module)), path, names, export_size)
    return dict(target=spec, path=path, export_size=list(export_size), opset=OPSET,
                outputs=names, checks=check_onnx(path, module, check_sizes, threads))
