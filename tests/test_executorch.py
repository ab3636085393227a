"""ExecuTorch programs for phone apps: each program run through ``executorch.runtime`` alone, on
an image as an app holds it (uint8 RGB HWC), against the PyTorch model; the contract read as an
app reads it; ``tools/test.py CONFIG x.pte --runtime executorch`` on tiny data; and the errors
for a truncated program or one of another model. Tiny models (RepViT-M0.6, 32-channel FPN),
exported once per module."""
import pytest
import torch
from tiny_runs import demo_pipeline, make_data, write_seg_config

from mmrepvit.deployment import executorch_program as etp
from mmrepvit.deployment.executorch_runtime import ExecuTorchSessions
from mmrepvit.deployment.seg_postprocess import upscale_argmax as etp_upscale
from mmrepvit.model_variants import build_target

# exports programs (minutes): `make test-slow`, not `make test` (docs/testing.md)
pytestmark = [pytest.mark.usefixtures('one_torch_thread'), pytest.mark.slow]

# the tiny Semantic FPN with a test pipeline that resizes (keep-ratio, then to a multiple of
# 32), so that the program's own resizing is what gets checked; no test hooks
RESIZING = f'''
test_pipeline = {demo_pipeline('test_pipeline', {1: dict(scale=(160, 96))})}
val_dataloader['dataset']['pipeline'] = test_pipeline  # test_dataloader's too
custom_hooks = []
'''
EXPORT_SIZE = (96, 128)
MAX_SIZE = 192
INT8_SIZE = (64, 64)  # the demo images' size, where the int8 program is calibrated


@pytest.fixture(scope='module')
def fpn(tmp_path_factory):
    """The tiny Semantic FPN (random weights, trained-like norms): its config and checkpoint,
    the float32 app program and the int8 one (calibrated on 2 val images)."""
    work = tmp_path_factory.mktemp('executorch')
    data = make_data(work / 'data')
    config = write_seg_config(work / 'fpn.py', data)
    with open(config, 'a') as f:
        f.write(RESIZING)
    model = build_target(config, 'unfused')
    ckpt = str(work / 'fpn.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    f32 = etp.export_segmentor_program(config, str(work / 'fpn.pte'), ckpt,
                                       export_size=EXPORT_SIZE, max_size=MAX_SIZE)
    int8 = etp.export_segmentor_program(config, str(work / 'fpn_int8.pte'), ckpt, 'int8',
                                        calib_images=2, export_size=INT8_SIZE,
                                        max_size=MAX_SIZE)
    return dict(work=work, config=config, ckpt=ckpt, f32=f32, int8=int8)


def app_image(size, seed=0):
    """An image as an app holds it: uint8 RGB [H, W, 3] (numpy), smooth regions of colour."""
    return etp.synthetic_image(size, seed).numpy()


def run_program(path, image):
    """``path`` run by ExecuTorch's runtime alone: the numpy image as a torch tensor in."""
    from executorch.runtime import Runtime
    method = Runtime.get().load_program(path).load_method('forward')
    return method.execute([torch.from_numpy(image)])


def test_segmentor_program_predicts_mmseg_classes_at_two_sizes(fpn):
    """The float32 program's class map, at the image's own size, is the PyTorch app module's
    on at least 99.9% of pixels (measured: 100%), and mmseg's ``inference_model``
    prediction (BGR image in, the config's resize and normalisation) on at least 99% (measured
    on this random-weight model: 99.6% and more), at the export size and at another shape.

    What differs from mmseg is the resizing of the uint8 image: OpenCV's bilinear resize
    computes in 11-bit fixed point, the program in float32, and the two round some pixel
    values to neighbouring integers; where logits are nearly tied (random weights: often),
    that flips a pixel's class. Without a resize in the test pipeline the maps are equal."""
    from mmseg.apis import inference_model, init_model
    model = init_model(fpn['config'], fpn['ckpt'], device='cpu')
    for seed, size in enumerate([EXPORT_SIZE, (150, 100)]):
        image = app_image(size, seed)
        expected = inference_model(model, image[..., ::-1].copy()).pred_sem_seg.data[0]
        got, = run_program(fpn['f32']['path'], image)
        assert got.shape == size and got.dtype == torch.int32
        assert len(expected.unique()) > 1  # a map of several classes, not a constant
        assert (got.long() == expected).float().mean() >= 0.99, size
    # the export's own check: the program against the PyTorch app module, two sizes
    assert [c['size'] for c in fpn['f32']['checks']] == [list(EXPORT_SIZE), [73, 163]]
    assert all(c['agree'] >= 0.999 for c in fpn['f32']['checks'])


def test_fixed_size_program_predicts_mmseg_classes_without_full_size_logits(fpn, monkeypatch):
    """``tools/export_executorch.py --fixed --size 96 128``: a program of that size only,
    which the test pipeline keeps (no resize, no padding), so it resizes its low-resolution
    logits and takes the argmax cell by cell (``upscale_argmax``): its class map is mmseg's
    ``inference_model``'s on at least 99.9% of pixels; another size is an error naming it."""
    from mmseg.apis import inference_model, init_model

    from tools import export_executorch
    calls = []
    monkeypatch.setattr(etp, 'upscale_argmax',
                        lambda *args: calls.append(args[1]) or etp_upscale(*args))
    path = str(fpn['work'] / 'fixed.pte')
    report, = export_executorch.main([fpn['config'], path, '--checkpoint', fpn['ckpt'],
                                      '--fixed', '--size', '96', '128', '--json'])
    assert report['contract']['min_size'] == report['contract']['max_size'] == [96, 128]
    assert calls and set(calls) == {4}  # the network's logits are at 1/4 of the input
    model = init_model(fpn['config'], fpn['ckpt'], device='cpu')
    image = app_image((96, 128), 7)
    expected = inference_model(model, image[..., ::-1].copy()).pred_sem_seg.data[0]
    got, = run_program(path, image)
    assert len(expected.unique()) > 1
    assert (got.long() == expected).float().mean() >= 0.999
    with pytest.raises(ValueError, match=r'fixed.pte.*exactly 96x128.*not 128x96'):
        ExecuTorchSessions(path).run(torch.from_numpy(app_image((128, 96))))


def test_int8_program_runs_and_mostly_agrees_with_float_at_two_sizes(fpn):
    """The int8 program (calibrated at 64x64, any size up to 192) predicts the float32
    PyTorch model's class on most pixels at its calibration size and another (measured on
    this random-weight model: about 97%), and says which sizes it takes."""
    from mmseg.apis import inference_model, init_model
    model = init_model(fpn['config'], fpn['ckpt'], device='cpu')
    for size in (INT8_SIZE, EXPORT_SIZE):
        image = app_image(size, 3)
        expected = inference_model(model, image[..., ::-1].copy()).pred_sem_seg.data[0]
        got, = run_program(fpn['int8']['path'], image)
        assert got.shape == size
        assert (got.long() == expected).float().mean() >= 0.9, size
    sessions = ExecuTorchSessions(fpn['int8']['path'])
    with pytest.raises(ValueError, match='fpn_int8.pte.*64x64 to 192x192.*not 200x128'):
        sessions.run(torch.from_numpy(app_image((200, 128))))


def test_contract_is_readable_as_an_app_reads_it(fpn):
    from executorch.runtime import Runtime
    program = Runtime.get().load_program(fpn['f32']['path'])

    def read(name):
        return program.load_method(name).execute([])

    assert read('kind') == ['segmentor']
    assert read('input_layout') == ['HWC'] and read('input_dtype') == ['uint8']
    assert read('input_channels') == ['RGB']
    assert read('min_size') == [64, 64] and read('max_size') == [MAX_SIZE, MAX_SIZE]
    assert read('output_names') == ['classes']
    assert read('class_names') == ['background', 'circle', 'triangle', 'square', 'star']
    assert read('precision') == ['f32'] and read('config_name') == ['fpn.py']
    assert 0 < fpn['f32']['planned_mb'] < 64  # activation memory, planned for 192 x 192
    int8 = Runtime.get().load_program(fpn['int8']['path'])
    assert int8.load_method('precision').execute([]) == ['int8']
    assert int8.load_method('max_size').execute([]) == [MAX_SIZE, MAX_SIZE]


def test_keep_ratio_size_is_mmcv_s_in_integer_arithmetic():
    """The program's branch-free keep-ratio size (which stays symbolic in torch.export) equals
    mmcv's ``rescale_size`` over a grid of image sizes and test scales."""
    import mmcv
    for long_edge, short_edge in [(2048, 512), (512, 128), (160, 96), (1333, 800)]:
        for h in range(64, 1100, 29):
            for w in range(64, 1100, 31):
                new_w, new_h = mmcv.rescale_size((w, h), (long_edge, short_edge))
                assert etp.keep_ratio_size(h, w, long_edge, short_edge) == (new_h, new_w)


def test_backbone_program_features_match_fused_pytorch(tmp_path):
    """RepViT-M0.6's feature maps from the program within 1e-4 of the fused PyTorch backbone,
    at the export size and another."""
    path = str(tmp_path / 'm0_6.pte')
    report = etp.export_backbone_program('m0_6', path, export_size=(64, 64), max_size=128)
    assert report['contract']['output_names'] == ['feat0', 'feat1', 'feat2', 'feat3']
    fused = build_target('m0_6', 'fused')
    for size in [(64, 64), (96, 128)]:
        x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
        got = run_program(path, x.numpy())
        with torch.no_grad():
            expected = fused(x)
        assert [g.shape for g in got] == [e.shape for e in expected]
        assert max(float((g - e).abs().max()) for g, e in zip(got, expected)) <= 1e-4


def test_int8_backbone_program_takes_sizes_other_than_its_calibration_size(tmp_path):
    """An int8 RepViT-M0.6 program calibrated at 64x64 runs at 96x128 and 128x96 too (it was
    quantised with symbolic sizes): the feature maps of the float32 backbone's shapes, close
    to them: a relative error of quantisation noise (random weights amplify it in the deeper
    maps; measured 4-25%, as at the calibration size), not of a wrong computation (~100%)."""
    path = str(tmp_path / 'm0_6_int8.pte')
    calibration = [torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(i))
                   for i in range(4)]
    report = etp.export_backbone_program('m0_6', path, precision='int8', export_size=(64, 64),
                                         max_size=128, calibration=calibration)
    assert report['contract']['min_size'] == [64, 64]
    assert report['contract']['max_size'] == [128, 128]
    fused = build_target('m0_6', 'fused')
    for size in [(96, 128), (128, 96)]:
        x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(5))
        got = run_program(path, x.numpy())
        with torch.no_grad():
            expected = fused(x)
        assert [g.shape for g in got] == [e.shape for e in expected]
        errors = [float((g - e).norm() / e.norm()) for g, e in zip(got, expected)]
        assert max(errors) < 0.5, (size, errors)


def test_tools_test_scores_a_program_as_its_checkpoint(fpn):
    """``tools/test.py CONFIG fpn.pte --runtime executorch``: the program, fed the original
    images, scores what the checkpoint scores, within 0.2 points (the resize's rounding,
    see above, on 5 tiny images of a random-weight model; measured: 0.08); the int8 one runs
    too."""
    from mmrepvit.apis.test import prepare_test_cfg, test
    work = fpn['work']
    metrics = {name: test(prepare_test_cfg(fpn['config'], weights, work_dir=str(work / name)),
                          runtime=runtime)
               for name, weights, runtime in [('pytorch', fpn['ckpt'], None),
                                              ('f32', fpn['f32']['path'], 'executorch'),
                                              ('int8', fpn['int8']['path'], 'executorch')]}
    assert metrics['pytorch']['mIoU'] > 0 and set(metrics['f32']) == set(metrics['pytorch'])
    for key, value in metrics['pytorch'].items():
        assert abs(metrics['f32'][key] - value) <= 0.2, (key, metrics)
    assert set(metrics['int8']) == set(metrics['pytorch'])


def test_infer_tool_draws_a_program_s_classes(fpn, tmp_path):
    """``tools/infer.py FOLDER CONFIG --weights fpn.pte --runtime executorch``: a picture
    (image beside its class map) and the class fractions of every image."""
    import json

    import cv2

    from mmrepvit.apis.infer import infer
    folder = fpn['work'] / 'data' / 'ade' / 'images' / 'validation'
    written = infer(str(folder), fpn['config'], fpn['f32']['path'], str(tmp_path),
                    runtime='executorch').written
    pictures = [p for p in written if p.endswith('.png')]
    assert len(pictures) == len(written) // 2 == 5
    assert cv2.imread(pictures[0]).shape == (64, 128, 3)
    fractions = json.load(open(written[1]))['class_fractions']
    assert abs(sum(fractions.values()) - 1) < 1e-3


def test_truncated_or_other_model_program_is_an_error_naming_it(fpn, tmp_path):
    from mmrepvit.deployment import check_model_file, open_model
    path = fpn['f32']['path']
    truncated = tmp_path / 'truncated.pte'
    data = open(path, 'rb').read()
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match='truncated.pte.*not a readable ExecuTorch program'):
        check_model_file(str(truncated), 'executorch')
    with pytest.raises(ValueError, match='fpn.pte.*run it with runtime executorch'):
        check_model_file(path)  # without --runtime executorch
    with pytest.raises(ValueError, match="fpn.pte.*exported from 'fpn.py'.*predicts 5 "
                       "classes, but the config's head has 3"):
        open_model(_config(fpn['config'], {'model.decode_head.num_classes': 3}), path,
                         runtime='executorch')
    plain = write_seg_config(tmp_path / 'no_resize.py', fpn['work'] / 'data')
    with pytest.raises(ValueError, match='fpn.pte.*prepares images as .*but the config as'):
        open_model(_config(plain), path, runtime='executorch')


def _config(path, options=None):
    from mmrepvit.config import load_config
    return load_config(str(path), options)


def test_benchmark_times_a_whole_segmentor_program_beside_pytorch(fpn):
    """``tools/benchmark.py CONFIG --variants fused executorch-int8``: the app program, exported
    for the benchmark's size, timed through the same test step, the same class maps made."""
    from mmrepvit.analysis.benchmark import benchmark
    report = benchmark([fpn['config']], ['fused', 'executorch-int8'], sizes=[INT8_SIZE],
                       threads=[1], repeats=2, warmup=1, memory=False)
    rows = {r['variant']: r for r in report['results']}
    assert set(rows) == {'fused', 'executorch-int8'}
    assert rows['executorch-int8']['outputs'] == rows['fused']['outputs']
    assert rows['executorch-int8']['median_ms'] > 0
