"""Latency, throughput and peak memory of backbones and whole models, every candidate timed
interleaved with the others (see ``timing``) so that ratios between them hold on a busy CPU."""
import atexit
import os
import os.path as osp
import platform
import shutil
import tempfile

import mmengine
import torch

from ..deployment.export import (
    export_detector,
    export_onnx,
    export_segmentor,
    exportable,
    make_traceable,
)
from ..deployment.quantize import graph_inputs, quantize_onnx, synthetic_feeds
from ..deployment.runtime import OnnxBackbone, build_onnx_model
from ..targets import (
    VARIANTS,
    build_target,
    describe_outputs,
    load_target_config,
    make_call,
    synthetic_batch,
    target_kind,
)
from .memory import peak_allocated_bytes, weight_bytes
from .timing import num_threads, paired_ratios, summarize, time_interleaved

ONNX_VARIANT = 'onnxruntime'
INT8_VARIANT = 'onnxruntime-int8'
ONNX_VARIANTS = (ONNX_VARIANT, INT8_VARIANT)


def _label(target, variant):
    return f'{target}:{variant}'


def _inference(fn, keep=None):
    def call():
        with torch.inference_mode():
            out = fn()
        if keep is not None:
            keep['outputs'] = out
    return call


def benchmark(targets, variants=('unfused', 'fused', 'fast'), sizes=((224, 224), ),
              batch_sizes=(1, ), threads=(2, ), repeats=30, warmup=5, mode='predict',
              classifier=False, cfg_options=None, memory=True, progress=False):
    """Time every (target, variant) at every (size, batch size, thread count).

    ``targets`` run in every one of ``variants``, or in their own (``target@v1,v2``).
    One group per (size, batch, threads): its candidates are timed interleaved. Each result
    carries median / best / spread, throughput, peak memory, what the call produced, and
    speed-ups (ratio of bests, median of per-round ratios) over the same target unfused and
    over the reference (the first candidate). Returns a JSON-ready dict.
    """
    plan = candidates(targets, variants)
    kinds = {t: target_kind(t) for t, _ in plan}
    if mode == 'tensor' and any(v in ONNX_VARIANTS and kinds[t] != 'backbone'
                                for t, v in plan):
        raise ValueError(f'the {" / ".join(ONNX_VARIANTS)} variants run whole models as '
                         f'deployed (with their post-processing): use mode="predict"')
    first = (sizes[0][0], sizes[0][-1])
    models = {_label(t, v): (t, v, build_onnx_target(t, kinds[t], first, classifier,
                                                     cfg_options, int8=v == INT8_VARIANT)
                             if v in ONNX_VARIANTS else
                             build_target(t, v, classifier=classifier, cfg_options=cfg_options))
              for t, v in plan}
    reference = next(iter(models))
    results = []
    for size in sizes:
        size = (size[0], size[-1])
        for batch_size in batch_sizes:
            for n in threads:
                results += _group(models, kinds, reference, size, batch_size, n, repeats,
                                  warmup, mode, memory, progress)
    return dict(reference=reference, repeats=repeats, warmup=warmup,
                environment=environment(), results=results)


def candidates(targets, variants):
    """[(target, variant)]: every target in every variant, or in its own list when written
    ``target@variant[,variant...]`` (e.g. a baseline timed only as it ships)."""
    plan = []
    for spec in targets:
        target, _, own = spec.partition('@')
        for variant in own.split(',') if own else variants:
            if variant not in VARIANTS + ONNX_VARIANTS:
                raise ValueError(f'variant {variant!r} of {spec!r}: valid are '
                                 f'{", ".join(VARIANTS + ONNX_VARIANTS)}')
            plan.append((target, variant))
    if not plan:
        raise ValueError('need at least one target and one variant')
    return plan


def build_onnx_target(spec, kind, size, classifier=False, cfg_options=None, int8=False):
    """The ``onnxruntime`` variant: the fused model exported to ONNX (into a temporary
    folder, traced at ``size``) and run by ONNX Runtime with the calling interface of the
    PyTorch candidates. A backbone: images in, feature maps out. A detector / segmentor:
    ``build_onnx_model``, whose ``test_step`` keeps the toolbox's data preprocessor and, after
    the graph, its rescaling / mask pasting (mmdet) or resizing (mmseg), so that the whole
    test step is timed on both sides; a detector's NMS runs inside the graph, done as mmdet
    does it (docs/deployment.md). Threads follow the group's setting, as for PyTorch.

    ``int8``: the export quantised (``deployment.quantize``), calibrated on four synthetic
    images of ``size``: right for timing, not for accuracy (measure that with
    ``tools/export_onnx.py --int8`` and ``tools/test.py``)."""
    if classifier:
        raise ValueError(f'the {ONNX_VARIANT} variant exports backbones without the '
                         f'classifier head')
    folder = tempfile.mkdtemp(prefix='mmrepvit_onnx_')
    atexit.register(shutil.rmtree, folder, True)  # kept till then: sessions per thread count
    path = osp.join(folder, f'{osp.splitext(osp.basename(spec))[0]}.onnx')
    if kind == 'backbone':
        module, names = exportable(spec, cfg_options)
        export_onnx(make_traceable(module), path, names, size)
        return OnnxBackbone(_int8(path, None, kind, size) if int8 else path)
    model = build_target(spec, 'fused', cfg_options=cfg_options)  # the PyTorch candidates'
    (export_detector if kind == 'mmdet' else export_segmentor)(model, path, size=size)
    if int8:
        path = _int8(path, model, kind, size)
    return build_onnx_model(load_target_config(spec, cfg_options), path)


def _int8(path, model, kind, size):
    int8_path = path[:-len('.onnx')] + '_int8.onnx'
    feeds = synthetic_feeds(model, kind, size, graph_inputs(path))
    quantize_onnx(path, int8_path, feeds)
    return int8_path


def _group(models, kinds, reference, size, batch_size, threads, repeats, warmup, mode,
           memory, progress):
    def call(label, keep=None):
        t, _, model = models[label]
        batch = synthetic_batch(kinds[t], size, batch_size)
        return _inference(make_call(kinds[t], model, batch, mode), keep)

    calls = {label: call(label) for label in models}
    peaks, outputs = {}, {}
    with num_threads(threads):
        times = time_interleaved(
            calls, repeats, warmup, progress,
            desc=f'{size[0]}x{size[1]} batch {batch_size} threads {threads}')
        for label in models:  # one more call each, untimed: peak memory and what it made
            keep = {}
            fn = call(label, keep)
            peaks[label] = peak_allocated_bytes(fn) if memory else fn()
            outputs[label] = describe_outputs(kinds[models[label][0]], keep['outputs'], mode)
    results = []
    for label, (t, v, model) in models.items():
        unfused = _label(t, 'unfused')
        results.append(dict(
            target=t, variant=v, label=label, kind=kinds[t], size=list(size),
            batch_size=batch_size, threads=threads,
            mode=mode if kinds[t] != 'backbone' else 'forward',
            **summarize(times[label], batch_size),
            peak_mb=None if peaks[label] is None else peaks[label] / 2**20,
            weights_mb=weight_bytes(model) / 2**20, outputs=outputs[label],
            vs_unfused=paired_ratios(times[unfused], times[label]) if unfused in times
            else None,
            vs_reference=paired_ratios(times[reference], times[label]),
            times_ms=[s * 1e3 for s in times[label]]))
    return results


def environment():
    return dict(torch=torch.__version__, mmengine=mmengine.__version__,
                python=platform.python_version(), machine=platform.machine(),
                processor=platform.processor() or None, cpu_count=os.cpu_count())


def format_table(report):
    """A Markdown table of a ``benchmark`` report (one row per candidate and group)."""
    head = ('| candidate | input | batch | threads | median ms | IQR ms | best ms | img/s '
            '| peak MB | vs unfused (best / median) | vs reference (best / median) |')
    lines = [head, '|' + '---|' * (head.count(' | ') + 1)]

    def ratio(r):
        return '' if r is None else f'{r["best_ratio"]:.2f}x / {r["median_round_ratio"]:.2f}x'

    for r in report['results']:
        peak = '' if r['peak_mb'] is None else f'{r["peak_mb"]:.1f}'
        lines.append(
            f'| {r["label"]} | {r["size"][0]}x{r["size"][1]} | {r["batch_size"]} '
            f'| {r["threads"]} | {r["median_ms"]:.2f} | {r["iqr_ms"]:.2f} | {r["best_ms"]:.2f} '
            f'| {r["throughput"]:.2f} | {peak} | {ratio(r["vs_unfused"])} '
            f'| {ratio(r["vs_reference"])} |')
    dets = {r['label']: r['outputs']['detections'] for r in report['results']
            if 'detections' in r['outputs']}
    lines.append(f'\nreference: {report["reference"]}; {report["repeats"]} timed runs after '
                 f'{report["warmup"]} warm-up, candidates interleaved; "median" speed-up is '
                 f'the median of per-round ratios; peak MB: allocations during one call '
                 f'(weights excluded).')
    if dets:
        lines.append('detections per image: ' + '; '.join(f'{k} {v}' for k, v in dets.items()))
    return '\n'.join(lines)
