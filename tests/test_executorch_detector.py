"""The RetinaNet app program (uint8 RGB image in, detections out) run by executorch.runtime
alone, against mmdet's own predictions: a tiny RetinaNet (RepViT-M0.6, 32-channel FPN and
head, 4 classes, test scale 160x128) with random weights and scores spread around the
threshold, exported once for images of its export size's aspect ratio; and the same program
through ``tools/test.py --runtime executorch`` and ``tools/infer.py`` (mmdet's DetInferencer)
on demo images of its size."""
import numpy as np
import pytest
import torch

from mmrepvit.deployment.compare import MASK_IOU
from mmrepvit.deployment.executorch_detector import (
    DetectorProgram,
    compare_programs,
    export_detector_program,
    greedy_nms,
)
from mmrepvit.deployment.executorch_program import synthetic_image

# exports programs (minutes): `make test-slow`, not `make test` (docs/testing.md)
pytestmark = [pytest.mark.usefixtures('one_torch_thread'), pytest.mark.slow]
RETINANET = 'configs/retinanet_repvit_m1_1_coco.py'
CLASSES = ('circle', 'triangle', 'square', 'star')  # the demo data's
OPTIONS = {'model.backbone.arch': 'm0_6', 'model.backbone.init_cfg': None,
           'model.neck.in_channels': [40, 80, 160, 320], 'model.neck.out_channels': 32,
           'model.bbox_head.in_channels': 32, 'model.bbox_head.feat_channels': 32,
           'model.bbox_head.stacked_convs': 2, 'model.bbox_head.num_classes': 4,
           'test_dataloader.dataset.pipeline.1.scale': (160, 128),
           'test_dataloader.dataset.metainfo': dict(classes=CLASSES)}
EXPORT_SIZE = (96, 120)  # resized to the test scale (128x160) inside the program
SCALE_SIZE = (128, 160)  # the test scale itself: the program's resize keeps it


def assert_all_agree(report):
    assert report['pytorch'] > 10, report  # detections to compare
    assert report['onnx'] == report['pytorch'] == report['agree'] == report['leading'], report
    assert report['min_mask_iou'] is None or report['min_mask_iou'] >= MASK_IOU


@pytest.fixture(scope='module')
def retinanet(tmp_path_factory):
    from mmrepvit.deployment.export import load_model
    model = load_model(RETINANET, cfg_options=OPTIONS)
    path = str(tmp_path_factory.mktemp('etdet') / 'retinanet.pte')
    report = export_detector_program(RETINANET, path, cfg_options=OPTIONS, model=model,
                                     export_size=EXPORT_SIZE, nms_candidates=300)
    return dict(model=model, report=report, path=path)


def test_program_detects_what_mmdet_detects_at_two_sizes(retinanet):
    """Images resized up inside the program, of the export size and of half it (the same
    aspect ratio): every detection agrees with mmdet's on the same network input (label, box
    within 1e-3 px of the network's input, score within 1e-4), and the NMS converged."""
    checks = retinanet['report']['checks']
    assert [c['size'] for c in checks] == [list(EXPORT_SIZE), [48, 60]], checks
    for check in checks:
        assert check['converged'] == 1, check
        assert_all_agree(check)
    assert retinanet['report']['contract']['resized_size'] == list(SCALE_SIZE)


def test_program_matches_mmdet_inference_on_an_image_file_read_as_bgr(retinanet, tmp_path):
    """The image an app holds (RGB) through the program, the same image through mmdet's
    inference_detector from a BGR array (its own test pipeline, OpenCV's resize, and data
    preprocessor): every detection agrees."""
    from mmdet.apis import inference_detector
    from mmengine.structures import InstanceData

    from mmrepvit.deployment.compare import compare_detections
    from mmrepvit.model_variants import load_target_config
    model = retinanet['model']
    model.cfg = load_target_config(RETINANET, OPTIONS)
    image = synthetic_image(EXPORT_SIZE, seed=7)
    expected = inference_detector(model, image.flip(-1).numpy()).pred_instances
    got = DetectorProgram(retinanet['path'])(image)
    assert got['boxes'].shape[1] == 4 and got['labels'].dtype == torch.int32
    got = InstanceData(bboxes=got['boxes'], scores=got['scores'], labels=got['labels'].long())
    # OpenCV's uint8 resize (fixed-point weights) and the program's (float, rounded) differ
    # by one level in some pixels: measured, boxes within 0.008 px, scores within 0.0051
    assert_all_agree(compare_detections(expected, got, box_tol=0.05, score_tol=0.01))


def test_contract_and_padding(retinanet):
    from executorch.runtime import Runtime
    program = Runtime.get().load_program(retinanet['path'])
    assert list(program.load_method('output_names').execute([])) == [
        'boxes', 'scores', 'labels', 'num_detections', 'nms_converged']
    assert program.load_method('max_detections').execute([])[0] == 100
    boxes, scores, labels, count, _ = program.load_method('forward').execute(
        [synthetic_image(EXPORT_SIZE, seed=3)])
    n = int(count[0])
    assert boxes.shape == (100, 4) and scores.shape == labels.shape == (100, )
    assert (scores[n:] == 0).all() and (labels[n:] == -1).all() and (boxes[n:] == 0).all()
    assert (scores[:n] > 0.05).all() and (labels[:n] >= 0).all()


def test_program_refuses_images_outside_its_contract(retinanet):
    run = DetectorProgram(retinanet['path'])
    with pytest.raises(ValueError, match=r'takes images of 48x60 to 96x120 that the test '
                       r'pipeline\'s keep-ratio Resize makes 128x160 \(one aspect ratio; '
                       r'80x120 becomes 107x160\) \(height x width\), not 80x120'):
        run(torch.zeros(80, 120, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r'takes images of 48x60 to 96x120.*not 300x64'):
        run(torch.zeros(300, 64, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r'uint8 RGB image \[H, W, 3\], not torch.float32'):
        run(torch.zeros(64, 64, 3))


def test_int8_program_runs_and_mostly_agrees(retinanet, tmp_path):
    """int8 (network and dense head), calibrated on app images, at the test scale (no
    resize): most of the float model's detections are found (same label, box within 2 px,
    score within 0.05; measured: 78 of 100, boxes within 0.08 px, scores within 0.049)."""
    from mmrepvit.deployment.executorch_detector import DenseDetectorApp
    from mmrepvit.deployment.executorch_runtime import detector_image_steps
    from mmrepvit.model_variants import load_target_config
    model = retinanet['model']
    calibration = [synthetic_image(SCALE_SIZE, seed) for seed in range(4)]
    path = str(tmp_path / 'int8.pte')
    report = export_detector_program(RETINANET, path, precision='int8', cfg_options=OPTIONS,
                                     model=model, export_size=SCALE_SIZE, nms_candidates=300,
                                     calibration=calibration)
    assert report['contract']['precision'] == 'int8'
    app = DenseDetectorApp(model, detector_image_steps(load_target_config(RETINANET, OPTIONS)))
    check, = compare_programs(path, model, app, [synthetic_image(SCALE_SIZE, 11)],
                              box_tol=2.0, score_tol=0.05)
    assert check['converged'] == 1 and check['agree'] >= 0.7 * check['pytorch'] > 7, check


def demo_data(retinanet, work, size):
    """The program's config on 3 demo images of ``size``, and the fused PyTorch model it was
    exported from as a checkpoint."""
    from mmrepvit.demo import make_demo_dataset
    from mmrepvit.model_variants import load_target_config
    make_demo_dataset(str(work), num_train=1, num_val=3, size=size, progress=False)
    cfg = load_target_config(RETINANET, OPTIONS)
    root = str(work / 'coco') + '/'
    cfg.test_dataloader.update(num_workers=0, persistent_workers=False)
    cfg.test_dataloader.dataset.data_root = root
    cfg.test_evaluator.ann_file = root + 'annotations/instances_val2017.json'
    config, ckpt = str(work / 'retinanet.py'), str(work / 'retinanet.pth')
    cfg.dump(config)
    torch.save(dict(state_dict=retinanet['model'].state_dict(), meta=dict()), ckpt)
    return dict(work=work, config=config, ckpt=ckpt, images=work / 'coco' / 'val2017')


@pytest.fixture(scope='module')
def on_demo_data(retinanet, tmp_path_factory):
    """Demo images of the export size (96x120)."""
    return demo_data(retinanet, tmp_path_factory.mktemp('etdet_data'), EXPORT_SIZE)


@pytest.fixture(scope='module')
def on_small_demo_data(retinanet, tmp_path_factory):
    """Demo images of half the export size (48x60, the same aspect ratio)."""
    return demo_data(retinanet, tmp_path_factory.mktemp('etdet_small'), (48, 60))


@pytest.mark.parametrize('data, leading, agree', [('on_demo_data', 95, 95),
                                                   ('on_small_demo_data', 0, 90)])
def test_tools_test_scores_a_detector_program_as_its_checkpoint(retinanet, data, leading,
                                                                 agree, request):
    """``tools/test.py CONFIG retinanet.pte --runtime executorch`` on demo images of the
    export size and of half it: the program, fed the original images, gives the
    checkpoint's bbox AP (within 0.01) and, image by image (``--out``), its detections
    (boxes within 0.05 px, scores within 0.01: OpenCV's resize against the program's, as
    above): at the export size the best 95 of 100 in order (measured: 98; near the cut at
    max_per_img=100 two random-weight scores within the tolerance swap places); at half
    it, upscaled 2.7x, more pixels differ by a level between OpenCV's fixed-point resize and
    the program's, and these random-weight scores, spread around the threshold, follow
    them: 90 of 100 agree (measured: 96-99; against mmdet fed the program's own resize,
    every one: ``test_program_detects_what_mmdet_detects_at_two_sizes``)."""
    import mmengine
    from mmengine.structures import InstanceData
    from test_analysis import load_tool

    from mmrepvit.deployment.compare import compare_detections
    on_demo_data = request.getfixturevalue(data)
    work, results, metrics = on_demo_data['work'], {}, {}
    for name, weights, extra in [('pytorch', on_demo_data['ckpt'], []),
                                 ('executorch', retinanet['path'], ['--runtime', 'executorch'])]:
        out = str(work / f'{name}.pkl')
        metrics[name] = load_tool('test').main([on_demo_data['config'], weights, '--out', out,
                                                '--work-dir', str(work / name)] + extra)
        results[name] = sorted(mmengine.load(out), key=lambda r: r['img_id'])
    assert 'coco/bbox_mAP' in metrics['pytorch'] and set(metrics['executorch']) == set(
        metrics['pytorch'])
    for key, value in metrics['pytorch'].items():
        assert abs(metrics['executorch'][key] - value) <= 0.01, (key, metrics)
    assert len(results['executorch']) == 3
    for expected, got in zip(results['pytorch'], results['executorch']):
        expected, got = (InstanceData(**r['pred_instances']) for r in (expected, got))
        report = compare_detections(expected, got, box_tol=0.05, score_tol=0.01)
        assert report['pytorch'] == 100 and report['leading'] >= leading, report
        assert min(report['onnx'], report['agree']) >= agree, report


def test_infer_tool_draws_a_detector_program_s_boxes(retinanet, on_demo_data, tmp_path):
    """``tools/infer.py FOLDER CONFIG --weights retinanet.pte --runtime executorch``: mmdet's
    DetInferencer runs the program through the deployed-model wrapper: a picture of each
    image and, as JSON, the program's own detections (the image as an app holds it, RGB)."""
    import json

    import cv2

    from mmrepvit.apis.infer import build_inferencer, infer
    from mmrepvit.deployment.deployed_model import ProgramDetector
    written = infer(str(on_demo_data['images']), on_demo_data['config'], retinanet['path'],
                    str(tmp_path), score_thr=0.05, runtime='executorch').written
    pictures = [p for p in written if p.endswith('.png')]
    assert len(pictures) == len(written) // 2 == 3
    assert cv2.imread(pictures[0]).shape == (*EXPORT_SIZE, 3)
    found = json.load(open(written[1]))
    image = torch.from_numpy(cv2.imread(found['image'])[..., ::-1].copy())
    expected = DetectorProgram(retinanet['path'])(image)
    assert len(found['detections']) == len(expected['scores']) > 10
    for detection, box, score, label in zip(found['detections'], expected['boxes'],
                                            expected['scores'], expected['labels']):
        assert detection['label'] == label and detection['class_name'] == CLASSES[label]
        assert detection['bbox'] == pytest.approx(box.tolist(), abs=0.01)
        assert detection['score'] == pytest.approx(float(score), abs=1e-5)
    inferencer = build_inferencer(on_demo_data['config'], retinanet['path'],
                                  runtime='executorch')
    assert isinstance(inferencer.model, ProgramDetector)
    # an image of half the size (the same aspect ratio): the program's detections, in its
    # pixels
    small = synthetic_image((48, 60), seed=4)
    found = inferencer(small.flip(-1).numpy(), return_datasamples=True)
    found = found['predictions'][0].pred_instances
    expected = DetectorProgram(retinanet['path'])(small)
    assert len(found) == len(expected['scores']) > 10 and found.bboxes[:, 2:].max() <= 60
    assert torch.allclose(found.bboxes, expected['boxes'], atol=1e-3)
    with pytest.raises(ValueError, match=r'retinanet.pte.*takes images of 48x60 to 96x120 '
                       r'that .* 128x160 .*\(height x width\), not 64x64'):
        inferencer(np.zeros((64, 64, 3), np.uint8))


def test_unconverged_nms_is_warned_once(retinanet, on_demo_data, recwarn):
    """A program reporting nms_converged 0 (its outputs so changed here): one warning naming
    the program, however many images."""
    from mmengine.config import Config

    from mmrepvit.deployment import open_model
    from mmrepvit.deployment.executorch_runtime import feed_original_images
    from mmrepvit.model_variants import synthetic_batch
    cfg = Config.fromfile(on_demo_data['config'])
    feed_original_images(cfg)
    model = open_model(cfg, retinanet['path'], 'executorch')
    run = model.sessions.run
    model.sessions.run = lambda image: run(image)[:4] + [torch.zeros(1, dtype=torch.int32)]
    batch = synthetic_batch('mmdet', EXPORT_SIZE)
    for _ in range(2):
        sample, = model.test_step(batch)
        assert len(sample.pred_instances) > 10
    messages = [str(w.message) for w in recwarn if 'NMS had not converged' in str(w.message)]
    assert len(messages) == 1 and 'retinanet.pte' in messages[0]


def test_greedy_nms_is_mmcvs_batched_nms():
    """On 300 random boxes of 3 classes: the same boxes kept as mmcv's batched_nms, and not
    converged (so flagged) when given too few iterations for a suppression chain."""
    from mmcv.ops import batched_nms
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + torch.rand(300, 2, generator=g) * 40 + 1], 1)
    scores, labels = torch.rand(300, generator=g), torch.randint(0, 3, (300, ), generator=g)
    _, expected = batched_nms(boxes, scores, labels, dict(type='nms', iou_threshold=0.5))
    order = scores.argsort(descending=True)
    shifted = boxes[order] + (labels[order] * (boxes.max() + 1))[:, None]
    keep, converged = greedy_nms(shifted, torch.ones(300, dtype=torch.bool), 0.5, 8)
    assert converged and set(order[keep].tolist()) == set(expected.tolist())
    # a chain: each box suppresses the next; greedy keeps every other one
    chain = torch.tensor([[i * 0.4, 0.0, i * 0.4 + 1, 1.0] for i in range(6)])
    keep, converged = greedy_nms(chain, torch.ones(6, dtype=torch.bool), 0.3, 2)
    assert not converged
    keep, converged = greedy_nms(chain, torch.ones(6, dtype=torch.bool), 0.3, 7)
    assert converged and keep.tolist() == [True, False, True, False, True, False]
