"""OpenVINO as the second runtime of the exported graphs, the precision a deployed model runs
in (explicit, checked against the file and the CPU, read back after compiling), and a
segmentor's classes computed without full-size logit maps. Small demo models, random weights
with trained-like BatchNorm statistics; OpenVINO missing is a failure (``make install``
installs it)."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from test_deployment import (
    DET_SIZES,
    FPN,
    MASK_RCNN,
    RETINA_OPTIONS,
    RETINANET,
    assert_all_agree,
    demo_data_options,
    plain_model,
)

from mmrepvit.deployment import UnsupportedPrecision, open_model
from mmrepvit.deployment import openvino_runtime as ovr
from mmrepvit.deployment import runtime as rt
from mmrepvit.deployment.compare import LOGIT_TOL
from mmrepvit.deployment.export import check_model, export_model
from mmrepvit.deployment.quantize import graph_inputs, quantize_onnx, synthetic_feeds
from mmrepvit.deployment.seg_postprocess import resize_argmax
from mmrepvit.model_variants import synthetic_batch
from mmrepvit.utils.cpu import BF16_FLAGS, cpu_flags, describe_cpu

pytestmark = pytest.mark.usefixtures('one_torch_thread')
HAS_BF16 = any(f in cpu_flags() for f in BF16_FLAGS)


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    return tmp_path_factory.mktemp('openvino')


@pytest.fixture(scope='module')
def fpn(work):
    """The demo Semantic FPN (random weights): PyTorch model, float32 export traced at
    128x128, and its int8 copy calibrated on synthetic images."""
    model, _ = plain_model(FPN, work / 'fpn.pth')
    path = export_model(FPN, str(work / 'fpn.onnx'), model=model, export_size=(128, 128),
                        check_sizes=[])['path']
    int8 = str(work / 'fpn_int8.onnx')
    quantize_onnx(path, int8, synthetic_feeds(model, 'mmseg', (128, 128), graph_inputs(path)))
    return dict(model=model, onnx=path, int8=int8)


def with_ori_shape(batch, ori_shape):
    """The batch as if its images had been resized from ``ori_shape`` (mmseg then resizes
    the logits back to it)."""
    for sample in batch['data_samples']:
        sample.set_metainfo(dict(ori_shape=ori_shape))
    return batch


def test_segmentor_in_openvino_matches_pytorch_at_three_sizes(fpn):
    """f32: logits within the ONNX Runtime path's 1e-4 of PyTorch's whole test step at the
    traced size and two others; and the classes-only path (graph cut before its last resize,
    ``resize_argmax``) predicts every pixel's class as PyTorch, also where the original image
    differs from the network input."""
    sizes = [(128, 128), (96, 160), (150, 200)]
    for check in check_model(fpn['model'], 'mmseg', FPN, fpn['onnx'], sizes,
                             runtime='openvino', precision='f32'):
        assert check['max_abs_diff'] <= LOGIT_TOL, check
        assert check['pixels_agree'] == 1.0, check
    classes_only = open_model(FPN, fpn['onnx'], runtime='openvino', seg_logits=False)
    assert classes_only.sessions.resize_mode in ('half_pixel', 'pytorch_half_pixel')
    for size, ori in zip(sizes, [(259, 135), (96, 160), (120, 333)]):
        with torch.no_grad():
            expected = fpn['model'].test_step(with_ori_shape(synthetic_batch('mmseg', size), ori))
            got = classes_only.test_step(with_ori_shape(synthetic_batch('mmseg', size), ori))
        assert got[0].pred_sem_seg.data.shape == (1, *ori)
        assert torch.equal(got[0].pred_sem_seg.data, expected[0].pred_sem_seg.data), size


@pytest.mark.parametrize('align_corners', [False, True])
def test_resize_argmax_gives_mmseg_classes(align_corners):
    """The classes of mmseg's post-processing (resize to the padded input, crop the padding,
    resize to the original image, argmax) from low-resolution logits, at up- and downscaling
    and with padding on every side; argmax before resizing would not give them."""
    g = torch.Generator().manual_seed(3)
    cases = [((32, 40), (128, 160), (0, 0, 0, 0), (128, 160)),
             ((32, 40), (128, 160), (3, 9, 0, 21), (300, 97)),
             ((25, 17), (100, 68), (0, 5, 7, 0), (40, 30))]
    for low_hw, pad, padding, ori in cases:
        low = torch.randn(1, 19, *low_hw, generator=g) * 3
        full = F.interpolate(low, size=pad, mode='bilinear', align_corners=align_corners)
        left, right, top, bottom = padding
        full = full[..., top:pad[0] - bottom, left:pad[1] - right]
        full = F.interpolate(full, size=ori, mode='bilinear', align_corners=align_corners)
        expected = full[0].argmax(0)
        got = resize_argmax(low[0], pad, padding, ori, align_corners, rows_per_tile=7)
        assert torch.equal(got, expected), (low_hw, pad, padding, ori)
        # the shortcut, classes first and then resized, gives other classes
        shortcut = F.interpolate(low.argmax(1, keepdim=True).float(), size=ori,
                                 mode='nearest')[0, 0].long()
        assert not torch.equal(shortcut, expected)


@pytest.mark.slow  # two detectors exported through mmdeploy: make test-slow
def test_detectors_in_openvino_match_pytorch(work):
    """Mask R-CNN (RepViT) and RetinaNet (MoCoViT) in OpenVINO f32: every detection agrees
    with PyTorch as in ONNX Runtime (labels, boxes within 1e-3 px, scores within 1e-4, mask
    IoU >= 0.99), at the traced size and at one the data preprocessor pads (the ONNX Runtime
    tests cover a third)."""
    mrcnn, ckpt = plain_model(MASK_RCNN, work / 'mrcnn.pth')
    path = export_model(MASK_RCNN, str(work / 'mrcnn.onnx'), model=mrcnn,
                        export_size=(128, 160), check_sizes=[])['path']
    for check in check_model(mrcnn, 'mmdet', MASK_RCNN, path, DET_SIZES[:2],
                             runtime='openvino'):
        assert_all_agree(check)
    retina, _ = plain_model(RETINANET, work / 'retina.pth', RETINA_OPTIONS)
    path = export_model(RETINANET, str(work / 'retina.onnx'), model=retina,
                        export_size=(64, 96), cfg_options=RETINA_OPTIONS,
                        check_sizes=[])['path']
    for check in check_model(retina, 'mmdet', RETINANET, path, [(64, 96)] + DET_SIZES[1:2],
                             cfg_options=RETINA_OPTIONS, runtime='openvino', precision='f32'):
        assert_all_agree(check)


def test_int8_graph_runs_in_openvino_at_unseen_sizes(fpn):
    """The project's int8 (QDQ) file read by OpenVINO: runs at sizes it was not calibrated
    or traced at, is reported as int8, and follows the float graph as ONNX Runtime's run of
    the same file does. Its weights have the range this CPU's int8 kernels sum without
    saturating (``quantize.default_reduce_range``): 8-bit weights on a CPU without VNNI
    saturate and fail this bound (docs/deployment.md)."""
    float_model = open_model(FPN, fpn['onnx'], runtime='openvino')
    int8_model = open_model(FPN, fpn['int8'], runtime='openvino', precision='int8')
    ort_int8 = open_model(FPN, fpn['int8'])
    assert int8_model.sessions.precision == ort_int8.sessions.precision == 'int8'

    def correlation(x, y):
        return float(torch.corrcoef(torch.stack([x.seg_logits.data.flatten(),
                                                 y.seg_logits.data.flatten()]))[0, 1])

    for size in [(96, 160), (160, 224)]:
        with torch.no_grad():
            a, b, c = (m.test_step(synthetic_batch('mmseg', size))[0]
                       for m in (float_model, int8_model, ort_int8))
        assert b.seg_logits.data.shape == a.seg_logits.data.shape == (5, *size)
        # random weights (nearly tied logits), 4 synthetic calibration images: the int8
        # logits follow the float ones closely, not exactly; the two runtimes agree as closely
        for x, y in ((a, b), (a, c), (b, c)):
            assert correlation(x, y) >= 0.95, size


def test_an_openvino_ir_runs_and_the_test_loop_takes_it(fpn, work):
    """The int8 file saved as an OpenVINO IR (``.xml`` beside its ``.bin``): read as int8, it
    computes what the ``.onnx`` file computes; ``tools/test.py`` takes an ``.xml`` with
    ``--runtime openvino`` and names the file when asked to run it elsewhere."""
    import openvino as ov

    from mmrepvit.deployment import check_model_file
    xml = str(work / 'fpn_int8.xml')
    ov.save_model(ovr.read_openvino(fpn['int8']), xml, compress_to_fp16=False)
    assert osp.isfile(xml[:-4] + '.bin') and rt.stored_precision(xml) == 'int8'
    model = open_model(FPN, xml, runtime='openvino')
    assert model.sessions.precision == 'int8'
    onnx_model = open_model(FPN, fpn['int8'], runtime='openvino')
    with torch.no_grad():
        a, b = (m.test_step(synthetic_batch('mmseg', (96, 160)))[0]
                for m in (onnx_model, model))
    assert b.seg_logits.data.shape == (5, 96, 160)
    torch.testing.assert_close(b.seg_logits.data, a.seg_logits.data, atol=1e-4, rtol=0)
    assert check_model_file(xml, 'openvino')
    with pytest.raises(ValueError, match='fpn_int8.xml.*with runtime onnxruntime, which runs '
                       '.onnx files: run it with runtime openvino'):
        check_model_file(xml)


def test_precision_is_checked_against_the_file_and_the_runtime(fpn):
    with pytest.raises(UnsupportedPrecision, match='fpn_int8.onnx.*is an int8 model'):
        open_model(FPN, fpn['int8'], runtime='openvino', precision='f32')
    with pytest.raises(UnsupportedPrecision, match='fpn.onnx.*is a float32 model.*--int8'):
        open_model(FPN, fpn['onnx'], runtime='openvino', precision='int8')
    with pytest.raises(UnsupportedPrecision, match="bf16 with runtime 'onnxruntime'"):
        open_model(FPN, fpn['onnx'], precision='bf16')
    with pytest.raises(ValueError, match="precision='fp16': valid are f32, bf16, int8"):
        open_model(FPN, fpn['onnx'], runtime='openvino', precision='fp16')
    with pytest.raises(ValueError, match="runtime='tensorrt': valid are onnxruntime, openvino"):
        open_model(FPN, fpn['onnx'], runtime='tensorrt')


def test_bf16_is_refused_on_a_cpu_without_it(fpn, monkeypatch):
    """A CPU without AVX512-BF16 / AMX (simulated here; this is also the real answer on
    such a CPU): an error naming the missing features and the CPU, before compiling."""
    monkeypatch.setattr(rt, 'cpu_flags', lambda: frozenset({'avx2', 'avx512_vnni'}))
    with pytest.raises(UnsupportedPrecision,
                       match='bf16 needs a CPU with avx512_bf16 or amx_bf16.*has neither'):
        open_model(FPN, fpn['onnx'], runtime='openvino', precision='bf16')


def test_bf16_accepted_where_the_cpu_has_it(fpn, monkeypatch):
    """With the capability present (simulated on a CPU without it) the check lets bf16
    through; OpenVINO then compiles in bf16 on a real bf16 CPU, and on any other CPU it would
    quietly compile in f32, which the read-back turns into an error instead."""
    monkeypatch.setattr(rt, 'cpu_flags', lambda: frozenset({'avx512_bf16', 'amx_bf16'}))
    assert rt.resolve_precision('openvino', fpn['onnx'], 'bf16') == 'bf16'
    if HAS_BF16:
        model = open_model(FPN, fpn['onnx'], runtime='openvino', precision='bf16')
        with torch.no_grad():
            got = model.test_step(synthetic_batch('mmseg', (96, 160)))[0]
        assert got.seg_logits.data.shape == (5, 96, 160)
    else:
        with pytest.raises(UnsupportedPrecision, match='OpenVINO compiled .* in f32, not bf16'):
            open_model(FPN, fpn['onnx'], runtime='openvino', precision='bf16')


@pytest.mark.skipif(not HAS_BF16, reason=f'this CPU has no bf16 ({describe_cpu()}): the '
                    f'bf16 model can only be run on one that has')
def test_bf16_model_runs_at_unseen_sizes(fpn):
    model = open_model(FPN, fpn['onnx'], runtime='openvino', precision='bf16')
    for size in [(96, 160), (160, 224)]:
        with torch.no_grad():
            got = model.test_step(synthetic_batch('mmseg', size))[0]
        assert got.seg_logits.data.shape == (5, *size)


SIGNAL_AFTER_RELEASE = r"""
import gc, os, signal, subprocess, sys
from mmrepvit.deployment.openvino_runtime import compile_openvino, read_openvino
compiled = [compile_openvino(read_openvino(sys.argv[1])) for _ in range(2)]
del compiled[0]; gc.collect()  # released in the order they were made
del compiled[0]; gc.collect()
signal.signal(signal.SIGCHLD, lambda *args: None)  # as PyTorch's DataLoader sets it
subprocess.run([sys.executable, '-c', ''], check=True)  # its end is a handled signal
print('alive')
"""


def test_a_handled_signal_after_compiled_models_are_released(fpn):
    """Models compiled and released in any order leave the process able to take a signal:
    one ``Core`` per process (``openvino_core``). A ``Core`` per model, released first in
    first out, left the thread's alternate signal stack on freed memory, and the next
    handled signal ended the process with SIGSEGV, in a fresh interpreter as in a test
    worker. Run in its own interpreter, where a crash is a return code."""
    result = subprocess.run([sys.executable, '-c', SIGNAL_AFTER_RELEASE, fpn['onnx']],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
    assert result.stdout.split() == ['alive']


def test_wrong_or_truncated_model_file_is_an_error_naming_it(work, fpn):
    from mmrepvit.deployment.export import export_onnx, exportable
    backbone = str(work / 'backbone.onnx')
    module, names = exportable('m0_6')
    export_onnx(module, backbone, names, (64, 64))
    with pytest.raises(ValueError, match='backbone.onnx: outputs .* neither a detector'):
        open_model(FPN, backbone, runtime='openvino')
    truncated = work / 'truncated.onnx'
    truncated.write_bytes(open(fpn['onnx'], 'rb').read()[:5000])
    with pytest.raises(ValueError, match='truncated.onnx'):
        ovr.read_openvino(str(truncated))
    from mmrepvit.deployment import check_model_file
    with pytest.raises(ValueError, match='truncated.onnx.*not a readable ONNX model'):
        check_model_file(str(truncated), 'openvino')
    with pytest.raises(ValueError, match='--runtime / --precision run an exported model'):
        check_model_file(str(work / 'fpn.pth'), 'openvino')


@pytest.fixture(scope='module')
def demo_fpn_onnx(demo_run, work):
    return export_model(FPN, str(work / 'demo_fpn.onnx'),
                        osp.join(demo_run['work_dir'], 'fpn', 'fused.pth'),
                        export_size=(160, 160), check_sizes=[],
                        cfg_options=demo_data_options(demo_run, 'fpn'))['path']


def test_tools_test_and_infer_with_openvino_give_the_checkpoints_results(
        demo_run, demo_fpn_onnx, tmp_path, capsys):
    """``tools/test.py CONFIG model.onnx --runtime openvino --precision f32`` scores what the
    checkpoint scores; ``tools/infer.py ... --runtime openvino`` writes the checkpoint's
    JSON; both say runtime, precision and CPU."""
    import json

    from mmrepvit.apis.infer import infer
    from mmrepvit.apis.test import prepare_test_cfg, test
    options = demo_data_options(demo_run, 'fpn')
    ckpt = osp.join(demo_run['work_dir'], 'fpn', 'iter_3.pth')
    expected = test(prepare_test_cfg(FPN, ckpt, work_dir=str(tmp_path / 'pt'),
                                     cfg_options=options))
    got = test(prepare_test_cfg(FPN, demo_fpn_onnx, work_dir=str(tmp_path / 'ov'),
                                cfg_options=options), runtime='openvino', precision='f32')
    assert expected['mIoU'] > 0 and set(expected) == set(got)
    for key, value in expected.items():
        assert abs(got[key] - value) <= 0.01, (key, expected, got)
    assert 'runtime openvino, precision f32, CPU ' in capsys.readouterr().out

    folder = osp.join(demo_run['data_root'], 'ade', 'images', 'validation')
    runs = {name: sorted(p for p in infer(folder, FPN, weights, str(tmp_path / name),
                                          runtime=runtime).written
                         if p.endswith('.json'))
            for name, weights, runtime in (('pt', ckpt, None),
                                           ('ov', demo_fpn_onnx, 'openvino'))}
    assert len(runs['pt']) == len(runs['ov']) > 0
    for a, b in zip(runs['pt'], runs['ov']):
        fa, fb = json.load(open(a))['class_fractions'], json.load(open(b))['class_fractions']
        assert fa.keys() == fb.keys()
        assert all(abs(fa[k] - fb[k]) <= 1e-4 for k in fa), (fa, fb)


def test_benchmark_times_the_openvino_variants():
    from mmrepvit.analysis.benchmark import benchmark, format_table
    report = benchmark(['m0_6'], ['fused', 'openvino', 'openvino-int8'], sizes=[(64, 64)],
                       threads=[1], repeats=2, warmup=1, memory=False)
    fused, *deployed = report['results']
    assert [r['variant'] for r in deployed] == ['openvino', 'openvino-int8']
    for result in deployed:
        assert result['median_ms'] > 0
        assert result['outputs'] == fused['outputs']
    env = report['environment']
    assert env['cpu'] and set(env['cpu_flags']) >= {'avx512_vnni', 'avx512_bf16', 'amx_bf16'}
    assert env['libraries']['openvino'] and env['libraries']['onnxruntime']
    assert format_table(report).startswith(f'CPU: {env["cpu"]}')


def test_a_registered_runtime_is_offered_checked_and_run(fpn, tmp_path):
    """The route of docs/architecture.md for a new runtime: a ``RuntimeSpec`` registered is
    what ``--runtime`` offers, ``check_model_file`` checks files and precisions against, and
    ``open_model`` runs (here ONNX Runtime's sessions on a file of a new suffix)."""
    import argparse
    import importlib.util
    import shutil

    from mmrepvit.deployment import check_model_file
    args = importlib.util.spec_from_file_location(
        '_args', osp.join(osp.dirname(__file__), '..', 'tools', '_args.py'))
    tool_args = importlib.util.module_from_spec(args)
    args.loader.exec_module(tool_args)
    toy = str(tmp_path / 'fpn.toy')
    shutil.copy(fpn['onnx'], toy)
    rt.register_runtime(rt.RuntimeSpec(
        'toyrt', ('.toy', ), ('f32', ),
        open=lambda path, precision, device, threads, low_resolution: rt.OnnxSessions(
            path, device, threads, low_resolution),
        check=rt.check_onnx_file, precision_of=rt.onnx_precision, export_tool='cp',
        install='nothing to install'))
    try:
        parser = argparse.ArgumentParser()
        tool_args.add_runtime_arguments(parser)
        assert parser.parse_args(['--runtime', 'toyrt']).runtime == 'toyrt'
        assert check_model_file(toy, 'toyrt')
        with pytest.raises(ValueError, match='fpn.toy.*run it with runtime toyrt'):
            check_model_file(toy)
        with pytest.raises(ValueError, match='fpn.onnx.*runtime toyrt, which runs .toy files: '
                           'run it with runtime onnxruntime or openvino'):
            check_model_file(fpn['onnx'], 'toyrt')
        with pytest.raises(UnsupportedPrecision, match="precision bf16 with runtime 'toyrt': it "
                           'runs f32; openvino runs bf16'):
            open_model(FPN, toy, runtime='toyrt', precision='bf16')
        batch = synthetic_batch('mmseg', (96, 128))
        with torch.no_grad():
            got, expected = (open_model(FPN, path, runtime=runtime).test_step(batch)[0]
                             for path, runtime in ((toy, 'toyrt'), (fpn['onnx'], None)))
        assert torch.equal(got.pred_sem_seg.data, expected.pred_sem_seg.data)
    finally:
        rt.RUNTIMES.pop('toyrt')
