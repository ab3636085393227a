"""The main job on built-in data: make the demo data, then for Mask R-CNN and Semantic FPN
(RepViT-M1.1): train on CPU, evaluate, fuse, evaluate the fused model, and save a picture."""
import os
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence

from mmengine.logging import print_log

from ..datasets.demo import demo_dataset_is_current, make_demo_dataset
from .config import config_path, load_config
from .fuse import fuse_checkpoint_file
from .test import prepare_test_cfg, test
from .train import prepare_train_cfg, train

DEMO_CONFIGS = {
    'maskrcnn': config_path('demo/maskrcnn_repvit_m1_1_demo.py'),
    'fpn': config_path('demo/fpn_repvit_m1_1_demo.py'),
}
# the metrics each job reports, as (name in the table, key in the metrics dict, scale)
REPORTED = {
    'maskrcnn': [('bbox AP50', 'coco/bbox_mAP_50', 100), ('bbox AP', 'coco/bbox_mAP', 100),
                 ('segm AP50', 'coco/segm_mAP_50', 100), ('segm AP', 'coco/segm_mAP', 100)],
    'fpn': [('mIoU', 'mIoU', 1), ('aAcc', 'aAcc', 1)],
}


def _data_options(data_root, job):
    sub = osp.join(data_root, 'coco' if job == 'maskrcnn' else 'ade') + '/'
    opts = {f'{split}_dataloader.dataset.data_root': sub for split in ('train', 'val', 'test')}
    if job == 'maskrcnn':
        ann = osp.join(sub, 'annotations', 'instances_val2017.json')
        opts.update({'val_evaluator.ann_file': ann, 'test_evaluator.ann_file': ann})
    return opts


def save_picture(config: str, checkpoint: str, index: int, out_file: str,
                 cfg_options: Optional[dict] = None) -> str:
    """Predict val image ``index`` with a (fused) checkpoint; draw the truth beside it."""
    import importlib

    import mmcv
    import torch
    from mmengine.dataset import pseudo_collate

    from ..checkpoint import load_model_checkpoint
    from .config import build_model, toolbox_of
    cfg = load_config(config, cfg_options)
    cfg.model.backbone.init_cfg = None
    model = build_model(cfg).eval()  # sets the toolbox's default scope
    load_model_checkpoint(model, checkpoint)
    scope = toolbox_of(cfg)
    registry = importlib.import_module(f'{scope}.registry')
    dataset = registry.DATASETS.build(cfg.test_dataloader.dataset)
    with torch.no_grad():
        sample = model.test_step(pseudo_collate([dataset[index]]))[0]
    image = mmcv.imread(sample.img_path, channel_order='rgb')
    visualizer = registry.VISUALIZERS.build(
        dict(type='DetLocalVisualizer' if scope == 'mmdet' else 'SegLocalVisualizer',
             name=f'demo_picture_{time.time()}', alpha=0.6))
    visualizer.dataset_meta = dataset.metainfo
    extra = dict(pred_score_thr=0.3) if scope == 'mmdet' else {}
    visualizer.add_datasample('truth | prediction', image, sample, draw_gt=True,
                              draw_pred=True, out_file=out_file, **extra)
    return out_file


def run_job(job: str, work_dir: str, data_root: str,
            cfg_options: Optional[dict] = None) -> dict:
    """Train, test, fuse, test fused, draw. Returns the row of the summary table."""
    config = DEMO_CONFIGS[job]
    options = dict(_data_options(data_root, job), **(cfg_options or {}))
    job_dir = osp.join(work_dir, job)
    row = dict(job=job)

    start = time.time()
    cfg = prepare_train_cfg(config, work_dir=job_dir, cfg_options=options)
    cfg.experiment_name = f'{job}_train'
    runner = train(cfg)
    row['train_s'] = time.time() - start
    checkpoint = osp.join(job_dir, f'iter_{runner.iter}.pth')
    row['checkpoint'] = checkpoint

    for variant in ('unfused', 'fused'):
        ckpt = checkpoint
        if variant == 'fused':
            ckpt = osp.join(job_dir, 'fused.pth')
            fuse_checkpoint_file(config, checkpoint, ckpt, options)
        start = time.time()
        cfg = prepare_test_cfg(config, ckpt, work_dir=job_dir, cfg_options=options)
        cfg.experiment_name = f'{job}_test_{variant}'
        metrics = test(cfg)
        row[f'test_{variant}_s'] = time.time() - start
        for name, key, scale in REPORTED[job]:
            row[f'{name} {variant}'] = metrics[key] * scale

    row['picture'] = save_picture(config, osp.join(job_dir, 'fused.pth'), 0,
                                  osp.join(work_dir, 'pictures', f'{job}_val_0.png'), options)
    return row


def format_summary(rows: List[dict]) -> str:
    lines = ['', 'mmrepvit demo: RepViT-M1.1 on CPU, demo data (val split); '
             'Mask R-CNN from scratch, Semantic FPN from its backbone',
             f'{"model":<24}{"metric":<12}{"unfused":>9}{"fused":>9}{"train":>9}{"test":>8}']
    names = {'maskrcnn': 'Mask R-CNN', 'fpn': 'Semantic FPN'}
    for row in rows:
        for i, (name, _, _) in enumerate(REPORTED[row['job']]):
            label = names[row['job']] if i == 0 else ''
            timing = f'{row["train_s"] / 60:>8.1f}m{row["test_unfused_s"]:>7.0f}s' if i == 0 \
                else ''
            lines.append(f'{label:<24}{name:<12}{row[name + " unfused"]:>9.1f}'
                         f'{row[name + " fused"]:>9.1f}{timing}')
    lines.append('pictures (fused model, truth on the left, prediction on the right):')
    lines += [f'  {row["picture"]}' for row in rows]
    return '\n'.join(lines)


def run_demo(work_dir: str = 'work_dirs/demo', data_root: str = 'data/demo',
             jobs: Sequence[str] = ('maskrcnn', 'fpn'), data_kwargs: Optional[dict] = None,
             cfg_options: Optional[Dict[str, dict]] = None) -> List[dict]:
    """The whole demo. ``data_kwargs`` / ``cfg_options`` shrink it (tests use a tiny run)."""
    start = time.time()
    data_kwargs = dict(data_kwargs or {})
    settings = {k: v for k, v in data_kwargs.items() if k != 'progress'}
    if not demo_dataset_is_current(data_root, **settings):
        print_log(f'making the demo dataset in {data_root}', logger='current')
        make_demo_dataset(data_root, **data_kwargs)
    os.makedirs(osp.join(work_dir, 'pictures'), exist_ok=True)
    rows = []
    for job in jobs:
        options = dict((cfg_options or {}).get(job) or {})
        if job == 'fpn' and rows and rows[-1]['job'] == 'maskrcnn':
            # the demo's stand-in for ImageNet pre-training: the backbone the detector learned
            options.setdefault('model.backbone.init_cfg', dict(
                _delete_=True, type='Pretrained', checkpoint=rows[-1]['checkpoint']))
            print_log(f'Semantic FPN starts from the backbone of {rows[-1]["checkpoint"]}',
                      logger='current')
        rows.append(run_job(job, work_dir, data_root, options))
    summary = format_summary(rows) + f'\ntotal time: {(time.time() - start) / 60:.1f} min'
    with open(osp.join(work_dir, 'summary.txt'), 'w') as f:
        f.write(summary + '\n')
    print(summary)
    return rows
