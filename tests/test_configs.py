"""Every shipped config builds and runs a training and a test step; RepViT swaps into the
toolboxes' stock configs with the three lines the README shows."""
import glob
import math
import os.path as osp

import pytest
from mmengine.config import Config
from model_steps import train_and_test_step

from mmrepvit.apis import load_config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'configs', '*.py')))


def check_steps(cfg):
    model, losses, preds = train_and_test_step(cfg)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert math.isfinite(float(total)) and float(total) > 0
    assert len(preds) == 2
    if cfg.default_scope == 'mmdet':
        assert preds[0].pred_instances.bboxes.shape[-1] == 4
        if 'mask' in cfg.model.type.lower() or 'mask_head' in cfg.model.get('roi_head', {}):
            assert 'masks' in preds[0].pred_instances
    else:
        assert preds[0].pred_sem_seg.data.shape[-2:] == (96, 128)
    return model


def test_published_configs_are_all_there():
    names = {osp.basename(c) for c in CONFIGS}
    for arch in ('m0_9', 'm1_0', 'm1_1', 'm1_5', 'm2_3'):
        assert f'maskrcnn_repvit_{arch}_coco.py' in names
        assert f'fpn_repvit_{arch}_ade20k.py' in names
    assert 'retinanet_repvit_m1_1_coco.py' in names


@pytest.mark.parametrize('config', CONFIGS)
def test_config_trains_and_tests_a_step(config):
    cfg = load_config(osp.join(REPO, config))
    assert cfg.auto_scale_lr.base_batch_size in (16, 32)
    model = check_steps(cfg)
    backbone = model.backbone
    if type(backbone).__name__ == 'RepViT':
        neck_in = cfg.model.neck.in_channels
        assert list(neck_in) == backbone.out_channels


def test_recipes_match_the_spec():
    det = load_config(osp.join(REPO, 'configs/maskrcnn_repvit_m1_1_coco.py'))
    assert det.model.backbone.taps == 'detection' and det.model.backbone.norm_eval
    assert det.optim_wrapper.optimizer == dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999),
                                               weight_decay=0.05)
    assert det.optim_wrapper.get('clip_grad') is None
    warmup, steps = det.param_scheduler
    assert (warmup.type, warmup.end, warmup.start_factor) == ('LinearLR', 500, 1e-6)
    assert (steps.milestones, det.train_cfg.max_epochs) == ([8, 11], 12)
    assert det.auto_scale_lr.base_batch_size == 16
    seg = load_config(osp.join(REPO, 'configs/fpn_repvit_m2_3_ade20k.py'))
    assert seg.model.backbone.taps == 'segmentation'
    assert seg.optim_wrapper.optimizer.weight_decay == 1e-4
    assert seg.train_cfg.max_iters == 40000 and seg.param_scheduler[0].eta_min == 1e-6
    assert seg.auto_scale_lr.base_batch_size == 32 and seg.train_dataloader.batch_size == 4
    assert any(t.type == 'ResizeToMultiple' for t in seg.test_dataloader.dataset.pipeline)


SWAP = """
_base_ = '{base}'
custom_imports = dict(imports=['mmrepvit'], allow_failed_imports=False)
model = dict(backbone=dict(_delete_=True, type='mmrepvit.RepViT', arch='m0_9'{extra}),
             neck=dict(in_channels=[48, 96, 192, 384]))
"""


@pytest.mark.parametrize('base, extra', [
    ('mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', ", taps='detection'"),
    ('mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py', ''),
    ('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', ''),
    ('mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py', ''),
    ('mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py', ''),
    ('mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py', ''),
])
def test_swap_into_stock_configs(tmp_path, base, extra):
    path = tmp_path / 'swap.py'
    text = SWAP.format(base=base, extra=extra)
    if 'upernet' in base:  # UPerNet's head reads the backbone, not a neck
        text = text.replace('neck=dict(in_channels=[48, 96, 192, 384])',
                            'decode_head=dict(in_channels=[48, 96, 192, 384]), '
                            'auxiliary_head=dict(in_channels=192)')
    path.write_text(text)
    cfg = Config.fromfile(str(path))
    cfg.model.pop('pretrained', None)
    check_steps(cfg)


# Every data transform the shipped configs (demo ones included) use, read for numpy 2 behaviour
# changes (docs/installation.md, "numpy 2"). Not all of the toolboxes' transforms are safe:
# mmcv's ``adjust_hue`` computes ``np.uint8(hue_factor * 255)``, which raises OverflowError under
# numpy 2 for a negative factor (numpy 1 wrapped it). Read a new one before adding it here.
NUMPY2_CHECKED_TRANSFORMS = {
    'mmdet': {'LoadImageFromFile', 'LoadAnnotations', 'Resize', 'RandomResize', 'RandomFlip',
              'PackDetInputs'},
    'mmseg': {'LoadImageFromFile', 'LoadAnnotations', 'Resize', 'RandomResize', 'RandomCrop',
              'RandomFlip', 'ResizeToMultiple', 'PhotoMetricDistortion', 'PackSegInputs'},
}


def test_every_config_transform_was_read_for_numpy2():
    demo = sorted(osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'configs/demo/*.py')))
    for config in CONFIGS + demo:
        cfg = load_config(osp.join(REPO, config))
        for split in ('train', 'val', 'test'):
            dataset = cfg[f'{split}_dataloader'].dataset
            while 'dataset' in dataset:  # dataset wrappers
                dataset = dataset.dataset
            for transform in dataset.pipeline:
                assert transform.type in NUMPY2_CHECKED_TRANSFORMS[cfg.default_scope], (
                    f'{config}: the {split} pipeline uses {cfg.default_scope} '
                    f'{transform.type!r}, which was not read for numpy 2 behaviour changes '
                    f'(docs/installation.md, "numpy 2"): read it, then add it to '
                    f'NUMPY2_CHECKED_TRANSFORMS')
