"""One training step and one test step of a config's model on tiny synthetic images; checks
that two models' predictions agree."""
import numpy as np
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.structures import InstanceData, PixelData

from mmrepvit.apis import build_model, toolbox_of


def synthetic_det_batch(num_images=2, size=(96, 128), num_classes=80, seed=0, train=True):
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    g = np.random.default_rng(seed)
    h, w = size
    inputs, samples = [], []
    for _ in range(num_images):
        inputs.append(torch.from_numpy(g.integers(0, 255, (3, h, w), dtype=np.uint8)))
        boxes = []
        masks = np.zeros((3, h, w), dtype=np.uint8)
        for i in range(3):
            x0, y0 = g.integers(0, w // 2), g.integers(0, h // 2)
            x1, y1 = x0 + g.integers(16, w // 2), y0 + g.integers(16, h // 2)
            boxes.append([x0, y0, x1, y1])
            masks[i, y0:y1, x0:x1] = 1
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                                             scale_factor=(1.0, 1.0), img_id=0,
                                             batch_input_shape=(h, w)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor(boxes, dtype=torch.float32),
            labels=torch.tensor(g.integers(0, num_classes, 3)),
            masks=BitmapMasks(masks, h, w))
        sample.ignored_instances = InstanceData(bboxes=torch.zeros(0, 4),
                                                labels=torch.zeros(0, dtype=torch.long))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def synthetic_seg_batch(num_images=2, size=(96, 128), num_classes=150, seed=0):
    from mmseg.structures import SegDataSample
    g = np.random.default_rng(seed)
    h, w = size
    inputs, samples = [], []
    for _ in range(num_images):
        inputs.append(torch.from_numpy(g.integers(0, 255, (3, h, w), dtype=np.uint8)))
        sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                             pad_shape=(h, w), scale_factor=(1.0, 1.0)))
        seg = torch.from_numpy(g.integers(0, num_classes, (1, h, w))).long()
        sample.gt_sem_seg = PixelData(data=seg)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


# per-image box counts of the detectors' train_cfg / test_cfg, capped: the heads' layers are
# the same, only how many proposals, sampled RoIs and detections pass through them
HEAD_CAPS = dict(nms_pre=200, max_per_img=50, num=64)


def _cap_counts(node):
    if isinstance(node, (list, tuple)):  # e.g. the three stages of Cascade R-CNN
        for item in node:
            _cap_counts(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in HEAD_CAPS and isinstance(value, int):
                node[key] = min(value, HEAD_CAPS[key])
            else:
                _cap_counts(value)


def shrink_for_cpu(cfg):
    """Same model, tiny inputs: no pretrained file, mmseg's 512x512 padding reduced, and the
    detectors' proposal / RoI / detection counts capped (``HEAD_CAPS``)."""
    cfg.model.backbone.init_cfg = None
    if toolbox_of(cfg) == 'mmseg' and cfg.model.data_preprocessor.get('size'):
        cfg.model.data_preprocessor.size = (96, 128)
    for key in ('train_cfg', 'test_cfg'):
        _cap_counts(cfg.model.get(key))
    return cfg


def train_and_test_step(cfg, size=(96, 128)):
    """Returns (losses of one optimiser step, predictions of one test step)."""
    torch.manual_seed(0)
    shrink_for_cpu(cfg)
    model = build_model(cfg)
    model.init_weights()
    seg = toolbox_of(cfg) == 'mmseg'
    make = synthetic_seg_batch if seg else synthetic_det_batch
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    model.train()
    losses = model.train_step(make(size=size), optim_wrapper)
    model.eval()
    with torch.no_grad():
        preds = model.test_step(make(size=size, seed=1))
    return model, losses, preds


def assert_same_detections(ref, out):
    a, b = ref.pred_instances, out.pred_instances
    assert len(a) == len(b) and len(a) > 0
    assert torch.equal(a.labels, b.labels)
    assert (a.bboxes - b.bboxes).abs().max() <= 1e-3
    assert (a.scores - b.scores).abs().max() <= 1e-4
    if 'masks' in a:
        assert (a.masks != b.masks).float().mean() < 1e-3


def assert_same_segmentation(ref, out):
    assert torch.equal(ref.pred_sem_seg.data, out.pred_sem_seg.data)
    torch.testing.assert_close(ref.seg_logits.data, out.seg_logits.data, atol=1e-4, rtol=1e-4)
