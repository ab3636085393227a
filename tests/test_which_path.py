"""``tools/which_path.py`` (``analysis.which_path``): every runtime and precision timed
interleaved, the ones this CPU cannot run listed with the reason, each path's accuracy on the
test set through ``tools/test.py``'s loop, and the fastest path within the tolerance. Tiny
inputs and the demo run's tiny models: what is checked is the report, not the speed."""
import functools
import os.path as osp

import pytest
from test_analysis import load_tool
from test_deployment import FPN, demo_data_options

from mmrepvit.analysis.which_path import PATHS, format_report, which_path
from mmrepvit.apis import evaluate_path
from mmrepvit.deployment.runtime import stored_precision
from mmrepvit.utils.cpu import cpu_flags

pytestmark = pytest.mark.usefixtures('one_torch_thread')
NO_BF16 = frozenset({'avx2'})  # a CPU without AVX512-BF16 / AMX, simulated


def fastest(rows):
    return min(rows, key=lambda r: r['median_ms'])['path']


@pytest.mark.slow
def test_which_path_tool_times_every_path_and_names_what_cannot_run(capsys):
    """A backbone, no checkpoint: every path timed or listed as unavailable with the reason
    this CPU gives; the answer is the fastest float32 path (int8 / bf16 accuracy unknown)."""
    report = load_tool('which_path').main(['m0_6', '--size', '64', '64', '--threads', '1',
                                           '--repeats', '2', '--warmup', '1', '--quiet'])
    assert [r['path'] for r in report['rows']] == list(PATHS)
    assert {'executorch', 'executorch-int8'} <= set(PATHS)
    has_bf16 = any(f in cpu_flags() for f in ('avx512_bf16', 'amx_bf16'))
    for row in report['rows']:
        assert row['available'] == (row['path'] != 'openvino-bf16' or has_bf16), row
        assert ('median_ms' in row) == row['available']
        assert 'metrics' not in row
    f32 = [r for r in report['rows'] if r['precision'] == 'f32' and r['available']]
    assert report['choice']['path'] == fastest(f32)
    assert not report['choice']['accuracy_measured']
    out = capsys.readouterr().out
    assert out.startswith('CPU: ') and 'openvino 2026' in out
    if not has_bf16:
        assert '| openvino-bf16 | openvino | bf16 | unavailable: precision bf16 needs a CPU ' \
            'with avx512_bf16 or amx_bf16' in out
    assert 'fastest path in float32 (int8 / bf16 accuracy not measured' in out
    assert '| executorch-int8 | executorch | int8 | ' in out


def test_executorch_paths_say_why_they_cannot_run(monkeypatch):
    """Without the executorch package, and for a whole model's accuracy (an app program
    takes one image size): unavailable, with the reason; a whole model's timing runs."""
    import importlib.util

    from mmrepvit.analysis.which_path import unavailable_reason
    assert unavailable_reason('executorch') is None
    assert unavailable_reason('executorch-int8', kind='mmseg') is None
    assert 'tools/test.py --runtime executorch' in unavailable_reason(
        'executorch-int8', kind='mmseg', accuracy=True)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name: None if name == 'executorch' else find_spec(name))
    assert unavailable_reason('executorch') == ('executorch is not installed (pip install -r '
                                                'requirements/executorch.txt)')


@pytest.mark.slow
def test_which_path_measures_every_paths_accuracy_against_float32(demo_run, tmp_path):
    """The demo Semantic FPN's fused checkpoint (3 val images): exported once (float32, and
    int8 calibrated on the val set), every path tested through tools/test.py's loop; the
    float32 paths score what PyTorch scores, int8 is judged by its drop, the answer is the
    fastest path within the tolerance; bf16 on a CPU without it is listed, not run."""
    options = demo_data_options(demo_run, 'fpn')
    evaluated = []

    def evaluate(path, weights, runtime, precision, fast):
        evaluated.append(path)
        return evaluate_path(FPN, weights, runtime, precision, fast,
                             work_dir=str(tmp_path / path), cfg_options=options)

    report = which_path(FPN, osp.join(demo_run['work_dir'], 'fpn', 'fused.pth'),
                        size=(128, 128), threads=1, repeats=2, warmup=1, tolerance=1.0,
                        evaluate=evaluate, work_dir=str(tmp_path / 'exports'),
                        cfg_options=options, calib_images=3, flags=NO_BF16)
    rows = {r['path']: r for r in report['rows']}
    assert not rows['openvino-bf16']['available']
    assert 'avx512_bf16 or amx_bf16' in rows['openvino-bf16']['reason']
    assert evaluated == [p for p in PATHS if p != 'openvino-bf16' and 'executorch' not in p]
    assert 'tools/test.py --runtime executorch' in rows['executorch']['reason']
    assert report['accuracy_reference'] == 'fused'
    reference = rows['fused']['metrics']
    assert reference['mIoU'] > 0
    for path in ('fast', 'onnxruntime', 'openvino'):
        for key, value in reference.items():
            assert abs(rows[path]['metrics'][key] - value) <= 0.01, (path, key)
    for path in ('onnxruntime-int8', 'openvino-int8'):
        row = rows[path]
        assert row['drop'] == pytest.approx(reference['mIoU'] - row['metrics']['mIoU'])
        assert row['within_tolerance'] == (row['drop'] <= 1.0)
    assert stored_precision(report['files']['int8']) == 'int8'
    assert report['files']['reduce_range'] == ('avx512_vnni' not in cpu_flags() and
                                               'avx_vnni' not in cpu_flags() and
                                               'amx_int8' not in cpu_flags())
    within = [r for r in rows.values() if r.get('within_tolerance')]
    assert report['choice']['path'] == fastest(within)
    assert report['choice']['accuracy_measured']
    table = format_report(report)
    assert '| mIoU | drop | within 1 |' in table
    assert f'fastest path losing at most 1 points: {report["choice"]["path"]}' in table


def test_which_path_refuses_what_it_cannot_answer():
    run = functools.partial(which_path, repeats=1, warmup=0)
    with pytest.raises(ValueError, match="path 'tensorrt': valid are fused, fast"):
        run('m0_6', paths=['fused', 'tensorrt'])
    with pytest.raises(ValueError, match='tolerance=-1: a metric drop in points'):
        run('m0_6', tolerance=-1)
    with pytest.raises(ValueError, match="checkpoint='x.pth' with the backbone 'm0_6'"):
        run('m0_6', checkpoint='x.pth')
