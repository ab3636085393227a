"""Which way of running a model (PyTorch, ONNX Runtime, OpenVINO, ExecuTorch, in each
precision) is fastest on this CPU at an accuracy close enough to float32: every path timed
interleaved, and with a checkpoint tested on the config's test set (docs/deployment.md)."""
import importlib.util
import os
import os.path as osp
from typing import Dict, Optional, Tuple

from ..deployment.export import export_model
from ..deployment.runtime import RUNTIMES, UnsupportedPrecision, require_bf16, runs_app_programs
from ..model_variants import DEFAULT_SIZES, target_kind
from ..utils.cpu import cpu_flags
from .benchmark import DEPLOYED, benchmark, format_environment

PATHS = ('fused', 'fast') + tuple(DEPLOYED)
PYTORCH_PATHS = ('fused', 'fast')
# (metric key, label, factor to points): what "within tolerance" is judged on
KEY_METRICS = {
    'mmdet': (('coco/bbox_mAP_50', 'bbox AP50', 100.0), ('coco/segm_mAP_50', 'segm AP50', 100.0)),
    'mmseg': (('mIoU', 'mIoU', 1.0), ),
}


def runtime_precision(path: str) -> Tuple[str, str]:
    """(runtime, precision) of a path name of ``PATHS``."""
    if path in PYTORCH_PATHS:
        return 'pytorch', 'f32'
    if path not in DEPLOYED:
        raise ValueError(f'path {path!r}: valid are {", ".join(PATHS)}')
    return DEPLOYED[path]


def unavailable_reason(path: str, flags=None, kind: str = 'backbone',
                       accuracy: bool = False) -> Optional[str]:
    """Why ``path`` cannot run on this machine (a runtime not installed, bf16 without the CPU
    feature) or for a ``kind`` of model (its ``accuracy`` measured too), or None if it can."""
    runtime, precision = runtime_precision(path)
    if runtime != 'pytorch' and importlib.util.find_spec(runtime) is None:
        return f'{runtime} is not installed ({RUNTIMES[runtime].install})'
    if runs_app_programs(runtime) and kind != 'backbone' and accuracy:
        return ('an app program takes one image size, a test set\'s vary: time it here '
                '(no --checkpoint), test it with tools/test.py --runtime executorch on '
                'images of its size')
    if precision == 'bf16':
        try:
            require_bf16(cpu_flags() if flags is None else flags)
        except UnsupportedPrecision as error:
            return str(error)
    return None


def which_path(target, checkpoint=None, size=None, threads=2, repeats=10, warmup=2,
               tolerance=1.0, paths=PATHS, evaluate=None, work_dir=None, cfg_options=None,
               calib_images=32, progress=False, flags=None) -> Dict:
    """Time every path of ``paths`` that can run here on ``target`` (a config or a backbone
    arch), interleaved; given ``checkpoint`` and ``evaluate(path, weights, runtime, precision,
    fast)`` (the test loop's metrics; runtime and precision None for PyTorch), measure each
    one's accuracy, with the files exported from ``checkpoint`` kept in ``work_dir``. Picks the
    fastest (median) whose ``KEY_METRICS`` lose at most ``tolerance`` points against float32
    PyTorch. Returns a JSON-ready report (``format_report``). ``flags``: the CPU's flags."""
    kind = target_kind(target)
    for path in paths:
        runtime_precision(path)
    if not paths:
        raise ValueError(f'paths is empty: give some of {", ".join(PATHS)}')
    if tolerance < 0:
        raise ValueError(f'tolerance={tolerance!r}: a metric drop in points, >= 0')
    if checkpoint is not None and kind == 'backbone':
        raise ValueError(f'checkpoint={checkpoint!r} with the backbone {target!r}: accuracy '
                         f'needs a detector or segmentor config and its test set')
    size = tuple(size or DEFAULT_SIZES[kind])
    reasons = {p: unavailable_reason(p, flags, kind, checkpoint is not None) for p in paths}
    runnable = [p for p in paths if reasons[p] is None]
    files, exports = {}, None
    if checkpoint is not None and any(p not in PYTORCH_PATHS for p in runnable):
        work_dir = work_dir or osp.join('work_dirs', 'which_path',
                                        osp.splitext(osp.basename(target))[0])
        os.makedirs(work_dir, exist_ok=True)
        files['f32'] = osp.join(work_dir, 'model.onnx')
        int8 = any(runtime_precision(p)[1] == 'int8' for p in runnable)
        files['int8'] = osp.join(work_dir, 'model_int8.onnx') if int8 else None
        export = export_model(target, files['f32'], checkpoint, export_size=size,
                              check_sizes=[], cfg_options=cfg_options,
                              int8_path=files['int8'], calib_images=calib_images)
        files['reduce_range'] = export['int8']['reduce_range'] if int8 else None
        exports = {(target, False): (files['f32'], None)}
        if int8:
            exports[target, True] = (files['int8'], None)
    timed = benchmark([target], runnable, [size], threads=[threads], repeats=repeats,
                      warmup=warmup, cfg_options=cfg_options, memory=False,
                      progress=progress, checkpoint=checkpoint,
                      exports=exports) if runnable else None
    timing = {r['variant']: r for r in (timed['results'] if timed else [])}
    rows = []
    for path in paths:
        runtime, precision = runtime_precision(path)
        row = dict(path=path, runtime=runtime, precision=precision,
                   available=reasons[path] is None, reason=reasons[path])
        if path in timing:
            r = timing[path]
            row.update(median_ms=r['median_ms'], best_ms=r['best_ms'],
                       vs_reference=r['vs_reference'])
        if checkpoint is not None and evaluate is not None and row['available']:
            weights = checkpoint if runtime == 'pytorch' else files[
                'int8' if precision == 'int8' else 'f32']
            row['metrics'] = evaluate(path, weights, None if runtime == 'pytorch' else runtime,
                                      None if runtime == 'pytorch' else precision,
                                      path == 'fast')
        rows.append(row)
    reference = _judge(kind, rows, tolerance)
    choice = _choose(rows)
    return dict(target=target, kind=kind, size=list(size), threads=threads, repeats=repeats,
                warmup=warmup, tolerance=tolerance, checkpoint=checkpoint, files=files,
                timing_reference=timed['reference'].partition(':')[2] if timed else None,
                accuracy_reference=reference, rows=rows, choice=choice,
                environment=timed['environment'] if timed else None)


def key_metrics(kind: str, metrics: dict) -> Dict[str, float]:
    """``{label: value in points}`` of the ``KEY_METRICS`` present in ``metrics``."""
    return {label: float(metrics[key]) * factor
            for key, label, factor in KEY_METRICS.get(kind, ()) if key in metrics}


def _judge(kind, rows, tolerance):
    """Each measured row's key metrics, its largest drop against the reference (the first
    float32 PyTorch row measured) and whether that is within ``tolerance``."""
    measured = [r for r in rows if 'metrics' in r]
    reference = next((r for r in measured if r['runtime'] == 'pytorch'), None)
    if reference is None:
        return None
    base = key_metrics(kind, reference['metrics'])
    for row in measured:
        values = key_metrics(kind, row['metrics'])
        row['key_metrics'] = values
        row['drop'] = max(base[k] - values[k] for k in base)
        row['within_tolerance'] = row['drop'] <= tolerance + 1e-9
    return reference['path']


def _choose(rows):
    """The fastest timed row (median) among those within tolerance, or, where accuracy was
    not measured, among the float32 ones."""
    candidates = [r for r in rows if 'median_ms' in r and (
        r['within_tolerance'] if 'within_tolerance' in r else r['precision'] == 'f32')]
    if not candidates:
        return None
    best = min(candidates, key=lambda r: r['median_ms'])
    return dict(path=best['path'], runtime=best['runtime'], precision=best['precision'],
                median_ms=best['median_ms'], best_ms=best['best_ms'],
                accuracy_measured='within_tolerance' in best)


def format_report(report: Dict) -> str:
    """The table (one row per path), the CPU and libraries it was measured with, and the
    answer."""
    labels = [label for _, label, _ in KEY_METRICS.get(report['kind'], ())]
    measured = any('key_metrics' in r for r in report['rows'])
    head = ['path', 'runtime', 'precision', 'median ms', 'best ms',
            f'speed-up over {report["timing_reference"]} (best / median)']
    if measured:
        head += labels + ['drop', f'within {report["tolerance"]:g}']
    lines = []
    if report['environment']:
        lines += [format_environment(report['environment']), '']
    h, w = report['size']
    lines.append(f'{report["target"]} at {h}x{w}, {report["threads"]} threads, '
                 f'{report["repeats"]} interleaved rounds after {report["warmup"]} warm-up')
    if measured:
        lines.append(f'accuracy: the test set through tools/test.py\'s loop, drop in points '
                     f'against {report["accuracy_reference"]} (float32)')
    lines += ['', '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in report['rows']:
        cells = [r['path'], r['runtime'], r['precision']]
        if not r['available']:
            cells += [f'unavailable: {r["reason"]}'] + [''] * (len(head) - 4)
        elif 'median_ms' not in r:
            cells += ['not timed'] + [''] * (len(head) - 4)
        else:
            ratio = r['vs_reference']
            cells += [f'{r["median_ms"]:.2f}', f'{r["best_ms"]:.2f}',
                      f'{ratio["best_ratio"]:.2f}x / {ratio["median_round_ratio"]:.2f}x']
            if measured:
                values = r.get('key_metrics', {})
                cells += [f'{values[k]:.2f}' if k in values else '' for k in labels]
                cells += [f'{r["drop"]:.2f}', 'yes' if r['within_tolerance'] else 'no'] \
                    if 'drop' in r else ['', '']
        lines.append('| ' + ' | '.join(cells) + ' |')
    choice = report['choice']
    lines.append('')
    if choice is None:
        lines.append('no path ran within the tolerance')
    else:
        rule = (f'losing at most {report["tolerance"]:g} points' if choice['accuracy_measured']
                else 'in float32 (int8 / bf16 accuracy not measured: give --checkpoint)')
        lines.append(f'fastest path {rule}: {choice["path"]} ({choice["runtime"]}, '
                     f'{choice["precision"]}; median {choice["median_ms"]:.2f} ms, best '
                     f'{choice["best_ms"]:.2f} ms)')
    if report['files'].get('f32'):
        lines.append(f'exported: {report["files"]["f32"]}' + (
            f', {report["files"]["int8"]} (reduce_range {report["files"]["reduce_range"]})'
            if report['files'].get('int8') else ''))
    return '\n'.join(lines)
