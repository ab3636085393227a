"""The Mask R-CNN app program (uint8 RGB image in; boxes, scores, labels, masks out) run by
executorch.runtime alone, against mmdet's own predictions of the same fused model: the demo
Mask R-CNN shrunk (RepViT-M0.6, 32-channel FPN and heads, 4 classes, test scale 128x128),
random weights, mask logits spread far from the threshold, exported once."""
import pytest
import torch
from mmengine.structures import InstanceData

from mmrepvit.deployment.compare import MASK_IOU, compare_detections
from mmrepvit.deployment.executorch_detector import (
    DetectorProgram,
    detector_app,
    export_detector_program,
    mmdet_detections,
    roi_features,
)
from mmrepvit.deployment.executorch_program import synthetic_image
from mmrepvit.deployment.executorch_runtime import detector_image_steps
from mmrepvit.model_variants import load_target_config

# exports programs (minutes): `make test-slow`, not `make test` (docs/testing.md)
pytestmark = [pytest.mark.usefixtures('one_torch_thread'), pytest.mark.slow]
MASK_RCNN = 'configs/demo/maskrcnn_repvit_m1_1_demo.py'
OPTIONS = {'model.backbone.arch': 'm0_6', 'model.neck.in_channels': [40, 80, 160, 320],
           'model.test_cfg.rpn.nms_pre': 100, 'model.test_cfg.rpn.max_per_img': 50}
for _key in ('neck.out_channels', 'rpn_head.in_channels', 'rpn_head.feat_channels',
             'roi_head.bbox_roi_extractor.out_channels', 'roi_head.bbox_head.in_channels',
             'roi_head.mask_roi_extractor.out_channels', 'roi_head.mask_head.in_channels',
             'roi_head.mask_head.conv_out_channels'):
    OPTIONS[f'model.{_key}'] = 32
EXPORT_SIZE = (128, 160)  # resized to 102x128 inside the program, masks pasted at 128x160


def assert_all_agree(report):
    assert report['pytorch'] >= 10, report  # detections to compare
    assert report['onnx'] == report['pytorch'] == report['agree'] == report['leading'], report
    assert report['min_mask_iou'] >= MASK_IOU, report


@pytest.fixture(scope='module')
def model():
    """Random weights (trained-like norms); mask logits of std ~8 around +2, so that masks
    fill parts of their boxes and no pixel sits within rounding of the threshold."""
    from mmrepvit.deployment.export import load_model
    model = load_model(MASK_RCNN, cfg_options=OPTIONS)
    conv = model.roi_head.mask_head.conv_logits
    with torch.no_grad():
        conv.weight.mul_(20.0)
        conv.bias.fill_(2.0)
    return model


@pytest.fixture(scope='module')
def program(model, tmp_path_factory):
    path = str(tmp_path_factory.mktemp('etmrcnn') / 'maskrcnn.pte')
    return export_detector_program(MASK_RCNN, path, cfg_options=OPTIONS, model=model,
                                   export_size=EXPORT_SIZE, nms_candidates=200)


def app(model):
    steps = detector_image_steps(load_target_config(MASK_RCNN, OPTIONS))
    return detector_app(model, steps, 200, 12)


def test_app_module_is_mmdets_mask_rcnn(model):
    """The app module in PyTorch, at two image sizes: mmdet's detections and masks."""
    module = app(model)
    for size in ((128, 160), (100, 90)):
        image = synthetic_image(size, seed=5)
        with torch.no_grad():
            boxes, scores, labels, count, converged, masks = module(image)
        n = int(count[0])
        assert converged[0] == 1 and masks.shape == (20, *size) and masks.dtype == torch.bool
        assert not masks[n:].any() and masks[:n].sum((1, 2)).gt(0).sum() >= n // 2
        got = InstanceData(bboxes=boxes[:n], scores=scores[:n], labels=labels[:n].long(),
                           masks=masks[:n].bool())
        assert_all_agree(compare_detections(mmdet_detections(model, module, image), got))


def test_program_detects_and_masks_what_mmdet_does_at_two_sizes(program):
    """Through executorch.runtime, images of the export size and of half it (the same
    aspect ratio): every detection agrees with mmdet's (label, box within 1e-3 px of the
    network's input, score within 1e-4, mask IoU >= 0.99), both NMS converged."""
    checks = program['checks']
    assert [c['size'] for c in checks] == [list(EXPORT_SIZE), [64, 80]], checks
    for check in checks:
        assert check['converged'] == 1, check
        assert_all_agree(check)


def test_contract_outputs_and_padding(program):
    from executorch.runtime import Runtime
    loaded = Runtime.get().load_program(program['path'])
    assert list(loaded.load_method('output_names').execute([])) == [
        'boxes', 'scores', 'labels', 'num_detections', 'nms_converged', 'masks']
    boxes, scores, labels, count, _, masks = loaded.load_method('forward').execute(
        [synthetic_image(EXPORT_SIZE, seed=3)])
    n = int(count[0])
    assert masks.shape == (20, *EXPORT_SIZE) and masks.dtype == torch.bool
    assert not masks[n:].any() and (labels[n:] == -1).all() and (scores[n:] == 0).all()
    assert masks[:n].any() and not masks[:n].all()
    # half the size, the same aspect ratio: masks at the image's own size, boxes inside it
    boxes, _, _, count, _, masks = loaded.load_method('forward').execute(
        [synthetic_image((64, 80), seed=3)])
    assert masks.shape == (20, 64, 80) and int(count[0]) > 0
    assert boxes[:, 2].max() <= 80 and boxes[:, 3].max() <= 64


def test_program_takes_its_aspect_ratio_and_refuses_another(program):
    """96x120 (4:5, as the export size): masks at its own size; 100x160: refused by name."""
    run = DetectorProgram(program['path'])
    assert run(synthetic_image((96, 120), seed=2))['masks'].shape[1:] == (96, 120)
    with pytest.raises(ValueError, match=r'takes images of 64x80 to 128x160 that .* makes '
                       r'102x128 \(one aspect ratio; 100x160 becomes 80x128\).*not 100x160'):
        run(torch.zeros(100, 160, 3, dtype=torch.uint8))


def test_int8_quantises_the_network_and_every_head(model):
    """``quantize``: the network, the RPN (one graph for every level), the box head and the
    mask head each become an int8 graph (float32 heads had left the COCO-size int8 program
    slower than fused PyTorch), calibrated as the app runs the images."""
    module = app(model)
    module.quantize([synthetic_image(EXPORT_SIZE, seed) for seed in range(2)])
    assert set(module.int8_parts) == {'network', 'per_level', 'box_head', 'mask_head'}
    for name in module.int8_parts:
        graph = getattr(module, name)
        graph = getattr(graph, 'quantized', graph)  # the network inside FloatFeatures
        assert any('quantize_per_tensor' in str(node.target) for node in graph.graph.nodes)


def test_int8_program_runs(model, tmp_path):
    """int8 network, RPN, box and mask heads: finite outputs of the program's shapes."""
    path = str(tmp_path / 'int8.pte')
    report = export_detector_program(MASK_RCNN, path, precision='int8', cfg_options=OPTIONS,
                                     model=model, export_size=EXPORT_SIZE, nms_candidates=200,
                                     calibration=[synthetic_image(EXPORT_SIZE, s)
                                                  for s in range(2)])
    assert report['contract']['precision'] == 'int8'
    got = DetectorProgram(path)(synthetic_image(EXPORT_SIZE, seed=11))
    n = int(got['num_detections'][0])
    assert n > 0 and got['masks'].shape == (n, *EXPORT_SIZE)
    assert torch.isfinite(got['boxes']).all() and torch.isfinite(got['scores']).all()


def test_roi_features_are_mmcvs_roi_align(model):
    """On random boxes of every level (elongated ones too), with the program's sample grids:
    what mmdet's RoI extractors give with mmcv's RoIAlign, within float rounding (1e-4)."""
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(1, 32, 32 >> i, 40 >> i, generator=g) for i in range(4)]
    xy = torch.rand(60, 2, generator=g) * 120
    boxes = torch.cat([xy, xy + torch.rand(60, 2, generator=g) * 100 + 0.5], 1)
    rois = torch.cat([torch.zeros(60, 1), boxes], 1)
    head = model.roi_head
    for extractor, grid in zip((head.bbox_roi_extractor, head.mask_roi_extractor),
                               app(model).grids):
        got = roi_features(feats, boxes, extractor, grid)
        assert (got - extractor(feats, rois)).abs().max() < 1e-4


def test_two_stage_detector_without_masks_is_refused(model):
    import copy
    faster = copy.deepcopy(model)
    faster.roi_head.mask_head = None
    with pytest.raises(ValueError, match='a StandardRoIHead with a mask head'):
        app(faster)
