"""The analysis library and tools: interleaved timing, benchmark reports, complexity counts
against the published figures, ONNX export checked under ONNX Runtime, the CPU fast path.
No timing assertions: speed figures live in docs/speed.md, measured interleaved."""
import copy
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from mmrepvit.analysis import (
    PUBLISHED,
    RepViTClassifier,
    benchmark,
    build_target,
    count,
    export_and_check,
    model_complexity,
    synthetic_batch,
    time_interleaved,
)
from mmrepvit.cpu_fast_path import ContiguousInputs, optimize_for_cpu
from mmrepvit.fusion import count_batchnorms
from mmrepvit.model_variants import randomize_norms

REPO = Path(__file__).resolve().parents[1]
SEG_CFG = str(REPO / 'configs/fpn_repvit_m1_1_ade20k.py')
DET_CFG = str(REPO / 'configs/maskrcnn_repvit_m1_1_coco.py')
SMALL = {'model.backbone.arch': 'm0_6', 'model.neck.in_channels': [40, 80, 160, 320]}


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: correctness does not need two, and on a shared machine two threads wait
    for each other at every op whenever another process holds a core (tens of times slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_time_interleaved_rotates_order_and_counts():
    calls = []
    times = time_interleaved({n: (lambda n=n: calls.append(n)) for n in 'abc'},
                             repeats=3, warmup=1)
    assert {k: len(v) for k, v in times.items()} == {'a': 3, 'b': 3, 'c': 3}
    assert calls[:3] == list('abc')  # warm-up
    assert calls[3:] == list('abc') + list('bca') + list('cab')  # nobody always first
    with pytest.raises(ValueError):
        time_interleaved({}, repeats=1)


def test_benchmark_report_on_a_tiny_run():
    report = benchmark(['m0_6'], ['unfused', 'fused', 'fast'], sizes=[(64, 64)],
                       batch_sizes=[2], threads=[1], repeats=2, warmup=1)
    rows = report['results']
    assert [r['variant'] for r in rows] == ['unfused', 'fused', 'fast']
    assert report['reference'] == 'm0_6:unfused'
    for r in rows:
        assert r['runs'] == 2 and len(r['times_ms']) == 2
        assert 0 < r['best_ms'] <= r['median_ms'] <= r['worst_ms']
        assert r['throughput'] == pytest.approx(2 * 1e3 / r['median_ms'])
        assert r['peak_mb'] > 0 and r['weights_mb'] > 0
        assert r['outputs']['output_shapes'] == [[2, 40, 16, 16], [2, 80, 8, 8],
                                                 [2, 160, 4, 4], [2, 320, 2, 2]]
    # each row's speed-up is the reference's time over its own (a ratio > 1: faster)
    for r in rows[1:]:
        assert r['vs_unfused']['best_ratio'] == pytest.approx(
            rows[0]['best_ms'] / r['best_ms'], rel=0.01)
    json.dumps(report)  # JSON-ready


def test_benchmark_cli_writes_json(tmp_path, capsys):
    out = tmp_path / 'bench.json'
    load_tool('benchmark').main(['m0_6', '--size', '64', '--repeats', '2', '--warmup', '1',
                                 '--variants', 'unfused', 'fused', '--no-memory', '--quiet',
                                 '--threads', '1',
                                 '--json', str(out)])
    table = capsys.readouterr().out
    assert '| m0_6:fused | 64x64 |' in table
    report = json.loads(out.read_text())
    assert [r['label'] for r in report['results']] == ['m0_6:unfused', 'm0_6:fused']
    assert report['command'].startswith('python tools/benchmark.py m0_6')


def test_candidates_take_per_target_variants():
    from mmrepvit.analysis.benchmark import candidates
    assert candidates(['m0_6@fused,fast', 'm1_1'], ['unfused']) == [
        ('m0_6', 'fused'), ('m0_6', 'fast'), ('m1_1', 'unfused')]
    with pytest.raises(ValueError, match='valid are'):
        candidates(['m0_6@quick'], ['unfused'])


def test_benchmark_whole_detector_predict_mode():
    report = benchmark([DET_CFG], ['fused', 'fast'], sizes=[(96, 128)], threads=[1],
                       repeats=1, warmup=0, memory=False, cfg_options=SMALL)
    for r in report['results']:
        assert r['mode'] == 'predict' and len(r['outputs']['detections']) == 1


@pytest.mark.parametrize('spec', ['m0_6', 'mocovit-0.5x'])
def test_fused_and_fast_have_no_batchnorm_and_same_outputs(spec):
    x = synthetic_batch('backbone', (96, 128))
    outs = {}
    for variant in ('unfused', 'fused', 'fast'):
        model = build_target(spec, variant)
        if variant != 'unfused':
            assert count_batchnorms(model) == 0
        with torch.no_grad():
            outs[variant] = model(x)
    for variant in ('fused', 'fast'):
        for a, b in zip(outs['unfused'], outs[variant]):
            torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('separable', [True, False])
def test_fast_path_roi_extraction_is_unchanged(separable):
    """Either RoIAlign of the fast path reads channels-last maps right: ours natively, mmcv's
    (which misreads them) through contiguous copies."""
    fused = build_target(DET_CFG, 'fused', cfg_options=SMALL)
    fast = optimize_for_cpu(copy.deepcopy(fused), separable_roi_align=separable)
    layer = type(fast.roi_head.bbox_roi_extractor.roi_layers[0]).__name__
    assert layer == ('SeparableRoIAlign' if separable else 'RoIAlign')
    x = synthetic_batch('backbone', (128, 160))
    rois = torch.tensor([[0, 4., 4., 60., 50.], [0, 30., 20., 150., 120.]])
    with torch.no_grad():
        feats = fused.extract_feat(x)
        feats_cl = fast.extract_feat(x.contiguous(memory_format=torch.channels_last))
        assert feats_cl[0].is_contiguous(memory_format=torch.channels_last)
        for extractor in ('bbox_roi_extractor', 'mask_roi_extractor'):
            ref = getattr(fused.roi_head, extractor)(feats[:4], rois)
            got = getattr(fast.roi_head, extractor)(feats_cl[:4], rois)
            torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_contiguous_copies_are_made_once_and_dropped_with_their_source():
    hook = ContiguousInputs()
    x = torch.randn(1, 4, 5, 6).contiguous(memory_format=torch.channels_last)
    plain = torch.randn(2, 3)
    a, same = hook(None, (x, plain))
    assert same is plain and a.is_contiguous() and torch.equal(a, x)
    assert hook(None, (x, ))[0] is a and len(hook.copies) == 1
    del x, a
    assert not hook.copies


def test_classifier_fuses_into_one_linear_head():
    model = randomize_norms(RepViTClassifier('m0_6')).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        model.switch_to_deploy()
        model.switch_to_deploy()
        assert isinstance(model.classifier, torch.nn.Linear)
        assert count_batchnorms(model) == 0
        torch.testing.assert_close(model(x), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('arch', list(PUBLISHED))
def test_fused_imagenet_model_matches_published_size(arch):
    fused = model_complexity(arch, (224, 224), ('fused', ), classifier=True)['fused']
    params, macs = PUBLISHED[arch]
    assert fused['macs'] == pytest.approx(macs, rel=0.05)
    assert fused['params'] == pytest.approx(params, rel=0.05)


def test_backbone_breakdown_sums_to_total():
    model = build_target('m0_6', 'fused', classifier=True)
    c = count(model, (torch.randn(1, 3, 224, 224), ))
    assert set(c['parts']) >= {'backbone', 'classifier'}
    for key in ('params', 'macs'):
        assert sum(p[key] for p in c['parts'].values()) == c[key]
    assert c['parts']['classifier']['macs'] == 320 * 1000  # one Linear after fusing


@pytest.mark.parametrize('config,parts', [
    (SEG_CFG, {'backbone', 'neck', 'decode_head'}),
    (DET_CFG, {'backbone', 'neck', 'rpn_head', 'roi_head'})])
def test_whole_model_breakdown(config, parts):
    report = model_complexity(config, (128, 160), ('unfused', 'fused'), cfg_options=SMALL)
    for variant in ('unfused', 'fused'):
        c = report[variant]
        assert parts <= set(c['parts'])
        for key in ('params', 'macs'):
            assert sum(p[key] for p in c['parts'].values()) == c[key]
    # fusing removes the norms' work and parameters, in the backbone (and the seg head)
    assert report['fused']['macs'] < report['unfused']['macs']
    assert report['fused']['parts']['backbone']['params'] < \
        report['unfused']['parts']['backbone']['params']


def test_get_flops_cli_json(capsys):
    out = load_tool('get_flops').main(['m0_6', '--size', '64', '--json', '-'])
    printed = json.loads(capsys.readouterr().out)
    assert printed['reports'][0]['fused']['macs'] == out['reports'][0]['fused']['macs'] > 0


def test_onnx_fused_backbone_matches_at_two_sizes(tmp_path):
    report = export_and_check('m0_6', str(tmp_path / 'm0_6.onnx'), (64, 64),
                              [(64, 64), (96, 160)])
    assert [c['output_shapes'][0] for c in report['checks']] == [[1, 40, 16, 16],
                                                                  [1, 40, 24, 40]]
    for c in report['checks']:
        assert c['max_abs_diff'] <= 1e-4


def test_onnx_fused_segmentor_cli_matches_at_two_sizes(tmp_path, capsys):
    out = tmp_path / 'seg.onnx'
    report = load_tool('export_onnx').main(
        [SEG_CFG, str(out), '--size', '64', '96', '--check-size', '128', '128',
         '--check-size', '96', '160', '--threads', '1', '--cfg-options',
         'model.backbone.arch=m0_6', 'model.neck.in_channels=[40,80,160,320]'])
    assert report['passed'] and 'PASS' in capsys.readouterr().out
    assert [c['output_shapes'] for c in report['checks']] == [[[1, 150, 128, 128]],
                                                              [[1, 150, 96, 160]]]
    for c in report['checks']:
        assert c['max_abs_diff'] <= 1e-4


def test_export_refuses_a_detector(tmp_path):
    with pytest.raises(ValueError, match='segmentors'):
        export_and_check(DET_CFG, str(tmp_path / 'det.onnx'))


def test_checkpoint_weights_are_loaded_then_fused(tmp_path):
    source = randomize_norms(build_target('m0_6', 'unfused')).eval()
    path = tmp_path / 'm0_6.pth'
    torch.save(source.state_dict(), path)
    fused = build_target('m0_6', 'fused', checkpoint=str(path))
    x = synthetic_batch('backbone', (64, 64))
    with torch.no_grad():
        for a, b in zip(source(x), fused(x)):
            torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


def test_optimize_for_cpu_is_idempotent():
    model = build_target('m0_6', 'fused')
    optimize_for_cpu(model)
    optimize_for_cpu(model)
    assert model.stem[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_cpu_speed_hook_trains_the_same_model_faster_layout():
    """The hook swaps RoIAlign and the layout, not the function: one training step's losses
    match the untouched model's."""
    from types import SimpleNamespace

    from mmengine.logging import MMLogger
    from mmengine.optim import build_optim_wrapper
    from model_steps import synthetic_det_batch

    from mmrepvit.apis import build_model
    from mmrepvit.engine import CPUSpeedHook
    from mmrepvit.model_variants import load_target_config

    cfg = load_target_config(DET_CFG, SMALL)
    torch.manual_seed(0)
    plain = build_model(cfg)
    fast = copy.deepcopy(plain)
    CPUSpeedHook(channels_last=True).before_run(
        SimpleNamespace(model=fast, logger=MMLogger.get_current_instance()))
    assert type(fast.roi_head.mask_roi_extractor.roi_layers[0]).__name__ == 'SeparableRoIAlign'
    conv = fast.roi_head.mask_head.convs[0].conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and conv.dim() == 4
    losses = {}
    for name, model in (('plain', plain), ('fast', fast)):
        model.train()
        torch.manual_seed(1)  # the same proposals sampled
        wrapper = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.0)))
        losses[name] = model.train_step(synthetic_det_batch(num_classes=80), wrapper)
    for key, value in losses['plain'].items():
        torch.testing.assert_close(losses['fast'][key], value, atol=1e-4, rtol=1e-3)
