"""Whole-model deployment: ONNX export of detectors (through mmdeploy) and segmentors (own
exporter), ONNX Runtime against PyTorch as whole test steps, fused against plain checkpoints,
and the deployed model inside mmdet's / mmseg's inferencers. Small demo models and images,
random weights with non-trivial BatchNorm statistics; mmdeploy missing is a failure, not a
skip (the export raises with the install command)."""
import os.path as osp
import sys

import numpy as np
import pytest
import torch

from mmrepvit.deployment import open_model
from mmrepvit.deployment.compare import LOGIT_TOL, MASK_IOU, compare_detections
from mmrepvit.deployment.export import check_model, export_model, spread_dense_scores
from mmrepvit.model_variants import build_target, load_target_config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
pytestmark = pytest.mark.usefixtures('one_torch_thread')


def config(*candidates):
    """The first of ``candidates`` (paths under configs/) that exists."""
    for name in candidates:
        if osp.isfile(osp.join(REPO, 'configs', name)):
            return osp.join(REPO, 'configs', name)
    raise FileNotFoundError(f'none of {candidates} in configs/')


MASK_RCNN = config('demo/maskrcnn_repvit_m1_1_demo.py')
FPN = config('demo/fpn_repvit_m1_1_demo.py')
# RetinaNet with the MoCoViT backbone (both backbone families get exported), 4 classes as the
# demo data has (tracing an 80-class head only takes longer)
RETINANET = config('mocovit/retinanet_mocovit_1_0x_coco.py', 'retinanet_mocovit_1_0x_coco.py')
RETINA_OPTIONS = {'model.bbox_head.num_classes': 4}
# 100x150 is padded to 128x160 by the data preprocessor: boxes must be clipped to the image
DET_SIZES = [(128, 160), (100, 150), (96, 128)]


def plain_model(config, path, cfg_options=None):
    """Random weights with trained-like norms (and RetinaNet scores around its threshold),
    saved as a plain (unfused, as trained) checkpoint; returns (model, path)."""
    model = build_target(config, 'unfused', cfg_options=cfg_options)
    spread_dense_scores(model)
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return model.eval(), str(path)


def load_fused(config, plain_ckpt, work, cfg_options=None):
    """``tools/fuse_checkpoint.py``'s fused checkpoint of ``plain_ckpt``, loaded with
    mmengine's ``load_checkpoint`` into the model of the ordinary config."""
    from mmengine.runner import load_checkpoint

    from mmrepvit.apis.fuse import fuse_checkpoint_file
    from mmrepvit.config import build_model
    fused_ckpt = str(work / (osp.basename(plain_ckpt) + '.fused.pth'))
    fuse_checkpoint_file(config, plain_ckpt, fused_ckpt, cfg_options)
    model = build_model(load_target_config(config, cfg_options))
    load_checkpoint(model, fused_ckpt, map_location='cpu', strict=True, logger='silent')
    return model


def assert_all_agree(report):
    assert report['pytorch'] > 0, report
    assert report['onnx'] == report['pytorch'] == report['agree'] == report['leading'], report
    assert report['min_mask_iou'] is None or report['min_mask_iou'] >= MASK_IOU, report


def outputs_equal(path_a, path_b, sizes, extra=None, atol=1e-4):
    from mmrepvit.deployment.runtime import ort_session
    a, b = ort_session(path_a), ort_session(path_b)
    for size in sizes:
        feed = {'input': torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(5))
                .numpy()}
        if extra:
            feed.update(extra(size))
        got_a, got_b = a.run(None, feed), b.run(None, feed)
        assert [o.shape for o in got_a] == [o.shape for o in got_b]
        assert max(float(np.abs(p - q).max()) for p, q in zip(got_a, got_b)) <= atol


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    return tmp_path_factory.mktemp('deployment')


@pytest.fixture(scope='module')
def mask_rcnn(work):
    """The demo Mask R-CNN: a plain checkpoint, its unfused PyTorch model, and the graph
    exported from its fused checkpoint (loaded with mmengine's load_checkpoint)."""
    plain, ckpt = plain_model(MASK_RCNN, work / 'mrcnn.pth')
    fused = load_fused(MASK_RCNN, ckpt, work)
    path = export_model(MASK_RCNN, str(work / 'mrcnn_fused.onnx'), model=fused,
                        export_size=(128, 160), check_sizes=[])['path']
    return dict(plain=plain, ckpt=ckpt, onnx=path)


def test_segmentor_logits_match_pytorch_at_three_sizes(work):
    model, ckpt = plain_model(FPN, work / 'fpn.pth')
    report = export_model(FPN, str(work / 'fpn.onnx'), model=model, export_size=(128, 128),
                          check_sizes=[(128, 128), (96, 160), (160, 224)])
    assert report['passed'], report
    for check in report['checks']:
        assert check['max_abs_diff'] <= LOGIT_TOL, check
        assert check['pixels_agree'] == 1.0, check
        assert check['shape'][1:] == check['size']  # logits at the image size

    # inside mmseg's own inferencer, on an image of another size
    from mmseg.apis import MMSegInferencer
    inferencer = MMSegInferencer(FPN, weights=ckpt, device='cpu')
    image = scene(150, 200)
    expected = inferencer(image, return_datasamples=True)
    inferencer.model = open_model(FPN, report['path'])
    got = inferencer(image, return_datasamples=True)
    assert got.seg_logits.data.shape == (5, 150, 200)
    assert (got.seg_logits.data - expected.seg_logits.data).abs().max() <= LOGIT_TOL
    assert torch.equal(got.pred_sem_seg.data, expected.pred_sem_seg.data)
    vis = inferencer(image, return_vis=True)['visualization']
    assert (vis[0] if isinstance(vis, list) else vis).shape == (150, 200, 3)

    # exported from the fused checkpoint: the same graph, up to float rounding
    fused = export_model(FPN, str(work / 'fpn_fused.onnx'), model=load_fused(FPN, ckpt, work),
                         export_size=(128, 128), check_sizes=[])
    outputs_equal(report['path'], fused['path'], [(128, 128), (96, 160)], atol=1e-5)


def test_mask_rcnn_from_fused_checkpoint_matches_plain_pytorch(mask_rcnn):
    """Every detection of the graph exported from the fused checkpoint agrees with the plain
    checkpoint's unfused PyTorch model: labels, boxes within 1e-3 px, scores within 1e-4,
    masks IoU >= 0.99. mmdeploy's own post-processing would differ (one RPN NMS over all
    levels, the argmax class's box for every class, clipping to the padding): the export
    puts mmdet's back."""
    for check in check_model(mask_rcnn['plain'], 'mmdet', MASK_RCNN, mask_rcnn['onnx'],
                             DET_SIZES):
        assert_all_agree(check)


def test_mask_rcnn_plain_and_fused_checkpoints_export_the_same_graph(work, mask_rcnn):
    report = export_model(MASK_RCNN, str(work / 'mrcnn_plain.onnx'), mask_rcnn['ckpt'],
                          export_size=(96, 128), check_sizes=[(128, 160), (96, 128)])
    assert report['passed'], report
    for check in report['checks']:
        assert_all_agree(check)
    outputs_equal(report['path'], mask_rcnn['onnx'], [(128, 160), (96, 192)],
                  extra=lambda size: {'img_shape': np.array([size[0] - 5, size[1] - 9])})


def test_mask_rcnn_in_det_inferencer(mask_rcnn):
    """open_model swapped into mmdet's DetInferencer: the same JSON predictions (boxes
    in original-image pixels, RLE masks pasted at the original size) and drawing."""
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(MASK_RCNN, weights=mask_rcnn['ckpt'], device='cpu',
                               show_progress=False)
    # resized to 102x128 by the test pipeline and padded to 128x128: boxes are rescaled, masks
    # pasted at the original size, and clipped to the image, not to the padding
    image = scene(120, 150)
    expected = inferencer(image, return_vis=True, return_datasamples=True)
    inferencer.model = open_model(MASK_RCNN, mask_rcnn['onnx'])
    got = inferencer(image, return_vis=True, return_datasamples=True)
    a, b = expected['predictions'][0].pred_instances, got['predictions'][0].pred_instances
    report = compare_detections(a, b)
    assert_all_agree(report)
    assert b.masks.shape[1:] == (120, 150) and b.masks.dtype == torch.bool
    vis_a, vis_b = expected['visualization'][0], got['visualization'][0]
    assert vis_a.shape == vis_b.shape == (120, 150, 3)
    assert np.mean(vis_a != vis_b) < 0.01  # text anti-aliasing aside, the same picture
    as_json = inferencer(image)['predictions'][0]  # mmdet's JSON-ready dict
    assert len(as_json['bboxes']) == len(as_json['masks']) == report['onnx']


def test_retinanet_matches_pytorch(work):
    """Every detection agrees, also where a level has more anchors than nms_pre (128x160):
    the export selects mmdet's (anchor, class) pairs, not mmdeploy's best anchors."""
    _, ckpt = plain_model(RETINANET, work / 'retina.pth', RETINA_OPTIONS)
    report = export_model(RETINANET, str(work / 'retina.onnx'), ckpt, export_size=(64, 96),
                          cfg_options=RETINA_OPTIONS, check_sizes=[(64, 96)] + DET_SIZES[:2])
    assert report['passed'], report
    for check in report['checks']:
        assert_all_agree(check)


def test_benchmark_times_the_onnxruntime_variants():
    from mmrepvit.analysis.benchmark import benchmark
    report = benchmark(['m0_6'], ['fused', 'onnxruntime', 'onnxruntime-int8'],
                       sizes=[(64, 64)], threads=[1], repeats=2, warmup=1, memory=False)
    fused, *deployed = report['results']
    assert [r['variant'] for r in deployed] == ['onnxruntime', 'onnxruntime-int8']
    for result in deployed:
        assert result['median_ms'] > 0
        assert result['outputs'] == fused['outputs']  # the same feature map shapes
        assert result['vs_reference']['median_round_ratio'] > 0


def demo_data_options(demo_run, job):
    from mmrepvit.demo.run import _data_options
    options = _data_options(demo_run['data_root'], job)
    for split in ('train', 'val', 'test'):
        options[f'{split}_dataloader.num_workers'] = 0
        options[f'{split}_dataloader.persistent_workers'] = False
    return options


@pytest.fixture(scope='module')
def demo_exports(demo_run, work):
    """The demo run's fused checkpoints (3 training iterations) exported, {job: onnx path}."""
    return {job: export_model(cfg, str(work / f'demo_{job}.onnx'),
                              osp.join(demo_run['work_dir'], job, 'fused.pth'),
                              export_size=(160, 160), check_sizes=[],
                              cfg_options=demo_data_options(demo_run, job))['path']
            for job, cfg in (('fpn', FPN), ('maskrcnn', MASK_RCNN))}


def test_tools_test_evaluates_an_exported_segmentor_as_its_checkpoint(demo_run, demo_exports,
                                                                      tmp_path):
    """``tools/test.py CONFIG model.onnx``: the graph exported from the fused checkpoint,
    tested in ONNX Runtime on the val set, scores what the plain checkpoint scores."""
    from mmrepvit.apis.test import prepare_test_cfg, test
    job_dir = osp.join(demo_run['work_dir'], 'fpn')
    options = demo_data_options(demo_run, 'fpn')
    onnx_file = demo_exports['fpn']
    metrics = [test(prepare_test_cfg(FPN, ckpt, work_dir=str(tmp_path / name),
                                     cfg_options=options))
               for name, ckpt in (('pytorch', osp.join(job_dir, 'iter_3.pth')),
                                  ('onnx', onnx_file))]
    assert metrics[0]['mIoU'] > 0 and set(metrics[0]) == set(metrics[1])
    for key, value in metrics[0].items():
        assert abs(metrics[1][key] - value) <= 0.01, (key, metrics)


def test_tools_test_evaluates_an_exported_detector_as_its_checkpoint(demo_run, demo_exports,
                                                                     tmp_path):
    """The same for the detector, prediction by prediction: ``--out`` of the checkpoint's test
    and of the ONNX file's hold the same detections (labels, boxes, scores) per image."""
    import pickle

    from mmengine.structures import InstanceData

    from mmrepvit.apis.test import prepare_test_cfg, test
    job_dir = osp.join(demo_run['work_dir'], 'maskrcnn')
    options = demo_data_options(demo_run, 'maskrcnn')
    onnx_file = demo_exports['maskrcnn']
    dumps = []
    for name, ckpt in (('pytorch', osp.join(job_dir, 'iter_3.pth')), ('onnx', onnx_file)):
        out = str(tmp_path / f'{name}.pkl')
        metrics = test(prepare_test_cfg(MASK_RCNN, ckpt, work_dir=str(tmp_path / name),
                                        out=out, cfg_options=options))
        assert 'coco/bbox_mAP' in metrics and 'coco/segm_mAP' in metrics
        with open(out, 'rb') as f:
            dumps.append({d['img_id']: d['pred_instances'] for d in pickle.load(f)})
    assert len(dumps[0]) == 3 and dumps[0].keys() == dumps[1].keys()
    for img_id, expected in dumps[0].items():
        a, b = (InstanceData(bboxes=p['bboxes'], scores=p['scores'], labels=p['labels'])
                for p in (expected, dumps[1][img_id]))
        assert_all_agree(compare_detections(a, b))


def test_infer_tool_runs_an_exported_detector_as_its_checkpoint(demo_run, demo_exports,
                                                               tmp_path):
    """``tools/infer.py FOLDER CONFIG --weights model.onnx``: for every image the same JSON
    detections (classes, boxes, scores, masks) and a picture of the same size as with the
    checkpoint; the config is required (an ONNX file carries none)."""
    import json

    import cv2

    from mmrepvit.apis.infer import infer
    folder = osp.join(demo_run['data_root'], 'coco', 'val2017')
    ckpt = osp.join(demo_run['work_dir'], 'maskrcnn', 'iter_3.pth')
    runs = {}
    for name, weights in (('pytorch', ckpt), ('onnx', demo_exports['maskrcnn'])):
        written = infer(folder, MASK_RCNN, weights, str(tmp_path / name), score_thr=0.0).written
        runs[name] = sorted(written)
    assert len(runs['onnx']) == len(runs['pytorch']) == 6  # 3 pictures, 3 JSON files
    for a, b in zip(runs['pytorch'], runs['onnx']):
        if a.endswith('.png'):
            assert cv2.imread(a).shape == cv2.imread(b).shape
            continue
        got, expected = json.load(open(b))['detections'], json.load(open(a))['detections']
        assert len(expected) > 0 and len(got) == len(expected)
        for x, y in zip(expected, got):
            assert (x['label'], x['class_name']) == (y['label'], y['class_name'])
            assert max(abs(p - q) for p, q in zip(x['bbox'], y['bbox'])) <= 0.011
            assert abs(x['score'] - y['score']) <= 1e-4
            assert x['mask_rle']['size'] == y['mask_rle']['size']
    with pytest.raises(ValueError, match='carries no config'):
        infer(folder, None, demo_exports['maskrcnn'], str(tmp_path / 'none'))


def test_tools_test_refuses_a_broken_or_fused_onnx_file(tmp_path):
    from mmrepvit.apis.test import prepare_test_cfg, test
    broken = tmp_path / 'broken.onnx'
    broken.write_text('not a graph')
    with pytest.raises(ValueError, match='broken.onnx.*not a readable ONNX model'):
        test(prepare_test_cfg(FPN, str(broken)))  # before the (missing) data is looked for
    with pytest.raises(ValueError, match='--fuse with .*fused already'):
        prepare_test_cfg(FPN, str(broken), fuse=True)


def test_mmdeploy_missing_is_an_error_naming_the_install_command(monkeypatch):
    from mmrepvit.deployment import mmdeploy_compat
    monkeypatch.setitem(sys.modules, 'mmdeploy', None)
    with pytest.raises(ImportError, match='make install-deploy'):
        mmdeploy_compat.require_mmdeploy()


def test_shims_apply_only_inside_the_export_context():
    import inspect

    import torch.onnx.symbolic_opset9 as opset9

    from mmrepvit.deployment.mmdeploy_compat import mmdeploy_context
    original = torch.onnx.export
    had_cast = hasattr(opset9, '_cast_Long')
    dynamo = inspect.signature(original).parameters.get('dynamo')
    with mmdeploy_context():
        assert hasattr(opset9, '_cast_Long')
        if dynamo is not None and dynamo.default is True:
            assert torch.onnx.export is not original
    assert torch.onnx.export is original
    assert hasattr(opset9, '_cast_Long') == had_cast


def scene(h, w, seed=0):
    """A few filled discs on a textured background (uint8, BGR)."""
    rng = np.random.default_rng(seed)
    img = (rng.random((h, w, 3)) * 60 + 90).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(4):
        cy, cx, r = rng.integers(15, h - 15), rng.integers(15, w - 15), rng.integers(8, 20)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = rng.integers(0, 255, 3)
    return img


@pytest.mark.parametrize('factor', [2, 3, 4, 8])
def test_upscale_argmax_gives_the_classes_of_the_resized_logits(factor):
    """A program's fixed-size post-processing predicts each pixel's class as mmseg's bilinear
    resize and argmax do: logits of many classes with regions and boundaries (exact), and
    i.i.d. noise where every cell is a boundary once all cells may be computed exactly."""
    import torch.nn.functional as F

    from mmrepvit.deployment.seg_postprocess import upscale_argmax

    def expected(low):
        return F.interpolate(low, scale_factor=factor, mode='bilinear').argmax(1)[0]

    g = torch.Generator().manual_seed(factor)
    regions = F.interpolate(torch.randn(1, 150, 3, 4, generator=g) * 3, size=(23, 31),
                            mode='bilinear')
    got = upscale_argmax(regions[0].permute(1, 2, 0), factor)
    assert torch.equal(got, expected(regions)) and len(got.unique()) > 3
    noise = torch.randn(1, 9, 7, 5, generator=g)
    assert torch.equal(upscale_argmax(noise[0].permute(1, 2, 0), factor, exact_cells=1.0),
                       expected(noise))


def test_upscale_argmax_finds_a_class_that_wins_only_between_its_pixels():
    """Two pixels whose best classes are 0 and 1 both rank class 2 second: between them
    class 2 wins. Taking candidates from the pixels' own best classes would miss it; the
    second-best bound marks those cells for the full computation."""
    import torch.nn.functional as F

    from mmrepvit.deployment.seg_postprocess import upscale_argmax
    low = torch.tensor([[[10., 0., 9.], [0., 10., 9.]]])  # (h=1, w=2, K=3)
    got = upscale_argmax(low, 4)
    assert got.tolist() == [[0, 0, 2, 2, 2, 2, 1, 1]] * 4
    resized = F.interpolate(low.permute(2, 0, 1)[None], scale_factor=4, mode='bilinear')
    assert torch.equal(got, resized.argmax(1)[0])


@pytest.mark.parametrize('scale,precision', [((2, 2), 'f32'), ((2, 2), 'int8'),
                                             ((3, 1), 'f32')])
def test_nearest_upsampling_runs_inside_xnnpack_with_the_same_values(scale, precision):
    """An FPN's top-down step (a map upsampled by whole factors, nearest, added to the
    finer one), traced by ``network_graph``: the rewritten graph gives PyTorch's values
    exactly, the lowered program leaves no nearest upsampling to ExecuTorch's portable
    kernels (it did before the rewrite), and run through ``executorch.runtime`` it gives
    the same values (float32) or the int8 module's within one int8 step of its output
    (XNNPACK's requantisation and PyTorch's reference arithmetic may round a value to
    neighbouring steps: measured on 12 random modules, at most one step)."""
    import torch.nn as nn
    import torch.nn.functional as F
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    from mmrepvit.deployment import executorch_program as etp

    class TopDown(nn.Module):
        def __init__(self):
            super().__init__()
            self.coarse, self.fine = nn.Conv2d(3, 8, scale, stride=scale), nn.Conv2d(3, 8, 1)

        def forward(self, x):
            coarse = F.interpolate(self.coarse(x), scale_factor=scale, mode='nearest')
            return self.fine(x) + coarse

    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = TopDown().eval()
    x = torch.randn(1, 3, 12, 18, generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=torch.channels_last)  # as an app program's image is
    graph = etp.network_graph(module, x)
    with torch.no_grad():
        assert torch.equal(graph(x), module(x))
    if precision == 'int8':
        graph = etp.quantize_module(module, x, [x])
    program = to_edge_transform_and_lower(etp.export_module(graph, x),
                                          partitioner=[XnnpackPartitioner()])
    outside = [str(node.target) for node in program.exported_program().graph.nodes
               if node.op == 'call_function' and 'delegate' not in str(node.target)
               and 'getitem' not in str(node.target)]
    assert not [name for name in outside if 'upsample' in name], outside
    buffer = program.to_executorch().buffer  # the runtime reads it in place: kept alive
    got, = Runtime.get().load_program(buffer).load_method('forward').execute([x])
    with torch.no_grad():
        expected = graph(x)
    step = 0.0
    if precision == 'int8':  # the output's int8 step: the scale of its last dequantise
        output, = next(node for node in graph.graph.nodes if node.op == 'output').args[0]
        assert 'dequantize_per_tensor' in str(output.target)
        step = output.args[1]
    assert (got - expected).abs().max() <= step + 1e-5, (got - expected).abs().max()


def test_segmentor_app_takes_classes_last_logits_only_where_they_are_the_segmentor_s(
        monkeypatch):
    """The app program's network computes the decode head's last 1x1 convolution on
    channels-last pixels, with or without a neck (a config with ``neck=None``); a head that
    does more after that convolution keeps mmseg's own logits (a silent change of the class
    maps otherwise). Either way the app predicts the segmentor's classes."""
    import torch.nn.functional as F

    from mmrepvit.deployment.executorch_program import SegmentorApp
    from mmrepvit.deployment.executorch_runtime import image_steps
    model = build_target(FPN, 'fused').eval()
    steps = image_steps(load_target_config(FPN))
    image = (torch.rand(64, 48, 3, generator=torch.Generator().manual_seed(0)) * 255).byte()

    def app_and_expected():
        app = SegmentorApp(model, steps).eval()
        with torch.no_grad():
            x, (h, w) = app.prepare(image)
            logits = F.interpolate(model._forward(x), size=x.shape[2:], mode='bilinear')
            logits = F.interpolate(logits[:, :, :h, :w], size=image.shape[:2], mode='bilinear')
            return app, app(image).long(), logits.argmax(1)[0]

    plain = app_and_expected()
    assert plain[0].classes_last
    # and without a neck: an FCN head on the backbone's last stage
    head = dict(_delete_=True, type='FCNHead', in_channels=512, in_index=3, channels=32,
                num_convs=1, concat_input=False, num_classes=5, norm_cfg=dict(type='BN'))
    model = build_target(FPN, 'fused', cfg_options={'model.neck': None,
                                                    'model.decode_head': head}).eval()
    neckless = app_and_expected()
    head_type = type(model.decode_head)
    forward = head_type.forward  # a head whose forward does more after conv_seg:
    monkeypatch.setattr(head_type, 'forward', lambda head, x: forward(head, x) * 2 + 1)
    more = app_and_expected()
    assert [neckless[0].classes_last, more[0].classes_last] == [True, False]
    for _, got, expected in (plain, neckless, more):
        assert torch.equal(got, expected) and len(expected.unique()) > 1
