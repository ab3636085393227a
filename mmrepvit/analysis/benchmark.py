"""Latency, throughput and peak memory of backbones and whole models, every candidate timed
interleaved with the others (see ``timing``) so that ratios between them hold on a busy CPU."""
import atexit
import os
import os.path as osp
import platform
import shutil
import tempfile
from importlib import metadata

import mmengine
import torch
import torch.nn.functional as F

from ..deployment.deployed_model import OnnxBackbone, open_model
from ..deployment.executorch_detector import export_detector_program
from ..deployment.executorch_program import (
    export_backbone_program,
    export_segmentor_program,
    synthetic_image,
)
from ..deployment.export import (
    export_detector,
    export_onnx,
    export_segmentor,
    exportable,
    make_traceable,
)
from ..deployment.quantize import graph_inputs, quantize_onnx, synthetic_feeds
from ..deployment.runtime import RUNTIMES, runs_app_programs
from ..deployment.seg_postprocess import resize_argmax
from ..model_variants import (
    VARIANTS,
    build_target,
    describe_outputs,
    load_target_config,
    make_call,
    synthetic_batch,
    target_kind,
)
from ..utils.cpu import cpu_model, relevant_flags
from ..utils.timing import num_threads, paired_ratios, summarize, time_interleaved
from .memory import peak_allocated_bytes, weight_bytes

# every registered runtime in each of its precisions: 'onnxruntime-int8' -> (runtime, precision)
DEPLOYED = {name + ('' if precision == 'f32' else f'-{precision}'): (name, precision)
            for name, spec in RUNTIMES.items() for precision in spec.precisions}
ONNX_VARIANTS = tuple(DEPLOYED)
LIBRARIES = ('torch', *RUNTIMES, 'mmengine', 'mmcv', 'mmdet', 'mmsegmentation', 'numpy')


def benchmark(targets, variants=('unfused', 'fused', 'fast'), sizes=((224, 224), ),
              batch_sizes=(1, ), threads=(2, ), repeats=30, warmup=5, mode='predict',
              classifier=False, cfg_options=None, memory=True, progress=False,
              checkpoint=None, exports=None):
    """Time every ``candidates(targets, variants)`` interleaved, in one group per (size,
    batch size, threads). Each result has median / best / spread, throughput, peak memory,
    what the call produced, and speed-ups over the same target unfused and over the first
    candidate. ``checkpoint``: the weights (random otherwise); ``exports``: files deployed
    variants run instead of their own, ``{(target, int8): (path, None)}``. JSON-ready."""
    plan = candidates(targets, variants)
    kinds = {t: target_kind(t) for t, _ in plan}
    if mode == 'tensor' and any(v in ONNX_VARIANTS and kinds[t] != 'backbone'
                                for t, v in plan):
        raise ValueError(f'the {" / ".join(ONNX_VARIANTS)} variants run whole models as '
                         f'deployed (with their post-processing): use mode="predict"')
    first = (sizes[0][0], sizes[0][-1])
    # (target, int8) -> file: one export (and int8 copy) for every runtime
    exports = dict(exports or {})
    models = {f'{t}:{v}': (t, v, build_onnx_target(t, kinds[t], first, classifier,
                                                     cfg_options, *DEPLOYED[v], exports,
                                                     checkpoint)
                             if v in DEPLOYED else
                             build_target(t, v, classifier=classifier, cfg_options=cfg_options,
                                          checkpoint=checkpoint))
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
    ``target@variant[,variant...]``."""
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


def build_onnx_target(spec, kind, size, classifier=False, cfg_options=None,
                      runtime='onnxruntime', precision='f32', exports=None, checkpoint=None):
    """A deployed variant (``DEPLOYED``) called as the PyTorch candidates are: the fused model
    exported at ``size`` (ONNX, or an ExecuTorch program) and run by ``runtime`` in
    ``precision``; a whole model keeps its toolbox's pre- and post-processing
    (``open_model``). int8 is calibrated on synthetic images: right for timing, not accuracy.
    ``exports`` caches the files between variants (docs/deployment.md)."""
    if classifier:
        raise ValueError(f'the {", ".join(DEPLOYED)} variants export backbones without the '
                         f'classifier head')
    exports = {} if exports is None else exports
    int8 = precision == 'int8'
    program = runs_app_programs(runtime)  # an ExecuTorch program, by its own exporter
    key = (spec, int8, 'pte') if program else (spec, int8)
    if program and key not in exports:
        exports[key] = (_program(spec, kind, size, precision, cfg_options, checkpoint), None)
    elif key not in exports:  # the float32 export, and its int8 copy for every runtime
        if (spec, False) not in exports:
            exports[spec, False] = _export(spec, kind, size, cfg_options, checkpoint)
        path, model = exports[spec, False]
        int8_path = path[:-len('.onnx')] + '_int8.onnx'
        quantize_onnx(path, int8_path, synthetic_feeds(model, kind, size, graph_inputs(path)))
        exports[spec, True] = (int8_path, model)
    path = exports[key][0]
    if kind == 'backbone':
        return OnnxBackbone(path, runtime=runtime, precision=precision)
    return open_model(load_target_config(spec, cfg_options), path, runtime, precision,
                      seg_logits=False)


def _file(spec, suffix):
    folder = tempfile.mkdtemp(prefix='mmrepvit_deployed_')
    atexit.register(shutil.rmtree, folder, True)  # kept till then: sessions per thread count
    return osp.join(folder, osp.splitext(osp.basename(spec))[0] + suffix)


def _program(spec, kind, size, precision, cfg_options, checkpoint=None):
    """An ExecuTorch program of ``spec`` for images of ``size`` (a whole model's: an app
    program, image in, results out), int8 calibrated on four synthetic images."""
    path = _file(spec, f'_{precision}.pte')
    if kind == 'backbone':
        export_backbone_program(
            spec, path, checkpoint=checkpoint, precision=precision, export_size=size,
            min_size=min(64, *size), max_size=max(1024, *size), check_sizes=[size],
            calibration=[synthetic_batch('backbone', size, seed=i) for i in range(4)])
        return path
    model = build_target(spec, 'fused', cfg_options=cfg_options, checkpoint=checkpoint)
    export = export_detector_program if kind == 'mmdet' else export_segmentor_program
    export(spec, path, precision=precision, export_size=size, fixed=True,
           cfg_options=cfg_options, model=model,
           calibration=[synthetic_image(size, seed) for seed in range(4)])
    return path


def _export(spec, kind, size, cfg_options, checkpoint=None):
    path = _file(spec, '.onnx')
    if kind == 'backbone':
        module, names = exportable(spec, cfg_options, checkpoint)
        export_onnx(make_traceable(module), path, names, size)
        return path, None
    # the PyTorch candidates' weights
    model = build_target(spec, 'fused', cfg_options=cfg_options, checkpoint=checkpoint)
    (export_detector if kind == 'mmdet' else export_segmentor)(model, path, size=size)
    return path, model


def _group(models, kinds, reference, size, batch_size, threads, repeats, warmup, mode,
           memory, progress):
    def call(label, keep=None):
        t, _, model = models[label]
        fn = make_call(kinds[t], model, synthetic_batch(kinds[t], size, batch_size), mode)

        def run():
            with torch.inference_mode():
                out = fn()
            if keep is not None:
                keep['outputs'] = out
        return run

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
        unfused = f'{t}:unfused'
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


def time_seg_postprocess(classes=150, size=(512, 512), ori_shape=None, threads=2, repeats=10,
                         warmup=2, seed=0):
    """A segmentor's post-processing on random logits at a quarter of ``size``: mmseg's (resize
    to the input, then to ``ori_shape``, argmax) against ``resize_argmax``, interleaved, and
    whether the two give the same classes."""
    h, w = size
    ori_shape = tuple(ori_shape or size)
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(1, classes, (h + 3) // 4, (w + 3) // 4, generator=g)

    def mmseg():
        full = F.interpolate(low, size=size, mode='bilinear', align_corners=False)
        return F.interpolate(full, size=ori_shape, mode='bilinear',
                             align_corners=False)[0].argmax(0)

    def fused():
        return resize_argmax(low[0], size, (0, 0, 0, 0), ori_shape)

    calls = {'mmseg': mmseg, 'resize_argmax': fused}
    with num_threads(threads), torch.inference_mode():
        times = time_interleaved(calls, repeats, warmup)
        same = bool(torch.equal(mmseg(), fused()))
    return dict(classes=classes, size=list(size), ori_shape=list(ori_shape), threads=threads,
                same_classes=same, environment=environment(),
                results={k: summarize(v, 1) for k, v in times.items()},
                ratio=paired_ratios(times['mmseg'], times['resize_argmax']))


def environment():
    """The CPU model, the flags that decide int8 / bf16 speed, and library versions."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return dict(cpu=cpu_model(), cpu_flags=relevant_flags(), libraries=versions,
                torch=torch.__version__, mmengine=mmengine.__version__,
                python=platform.python_version(), machine=platform.machine(),
                processor=platform.processor() or None, cpu_count=os.cpu_count())


def format_seg_postprocess(report):
    """The ``time_seg_postprocess`` report for people."""
    ratio = report['ratio']
    return '\n'.join(
        [format_environment(report['environment'])]
        + [f'{name}: median {r["median_ms"]:.2f} ms, best {r["best_ms"]:.2f} ms'
           for name, r in report['results'].items()]
        + [f'speed-up of resize_argmax over mmseg (mmseg time / its time): '
           f'{ratio["best_ratio"]:.2f}x best, {ratio["median_round_ratio"]:.2f}x median; '
           f'same classes: {report["same_classes"]}'])


def format_environment(env):
    """The report's header line: CPU, its relevant flags, library versions."""
    flags = ', '.join(f'{f} {"yes" if ok else "no"}' for f, ok in env['cpu_flags'].items())
    libraries = ', '.join(f'{k} {v}' for k, v in env['libraries'].items() if v)
    return (f'CPU: {env["cpu"]} ({env["cpu_count"]} logical CPUs; {flags})\n'
            f'libraries: {libraries}')


def format_table(report):
    """A Markdown table of a ``benchmark`` report (one row per candidate and group)."""
    head = ('| candidate | input | batch | threads | median ms | IQR ms | best ms | img/s '
            '| peak MB | vs unfused (best / median) | vs reference (best / median) |')
    lines = [format_environment(report['environment']), '', head,
             '|' + '---|' * (head.count(' | ') + 1)]

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
