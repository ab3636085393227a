"""The main job on built-in data: make the demo data, then for Mask R-CNN and Semantic FPN
(RepViT-M1.1): train on CPU, evaluate, fuse, evaluate the fused model, and save a picture."""
import os
import os.path as osp
import time

from mmengine.logging import print_log

from ..datasets import make_demo_dataset
from .config import load_config
from .fuse import fuse_checkpoint_file
from .test import prepare_test_cfg, test
from .train import prepare_train_cfg, train

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIGS = {
    'maskrcnn': osp.join(REPO, 'configs', 'demo', 'maskrcnn_repvit_m1_1_demo.py'),
    'fpn': osp.join(REPO, 'configs', 'demo', 'fpn_repvit_m1_1_demo.py'),
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


def save_picture(job, config, checkpoint, image, out_file, cfg_options=None):
    """Predict ``image`` with a (fused) checkpoint and draw truth beside the prediction."""
    import mmcv
    cfg = load_config(config, cfg_options)
    cfg.model.backbone.init_cfg = None
    from ..checkpoint import load_checkpoint_file
    from ..deploy import deploy_model_cfg, is_deploy_checkpoint
    if is_deploy_checkpoint(load_checkpoint_file(checkpoint)):
        cfg.model = deploy_model_cfg(cfg.model)
    img = mmcv.imread(image, channel_order='rgb')
    if job == 'maskrcnn':
        from mmdet.apis import inference_detector, init_detector
        from mmdet.visualization import DetLocalVisualizer
        model = init_detector(cfg, checkpoint, device='cpu')
        result = inference_detector(model, image)
        vis = DetLocalVisualizer(name=f'demo_{job}_{time.time()}')
        vis.dataset_meta = model.dataset_meta
        vis.add_datasample('prediction', img, result, draw_gt=False, pred_score_thr=0.5,
                           out_file=out_file)
    else:
        from mmseg.apis import inference_model, init_model
        from mmseg.visualization import SegLocalVisualizer
        model = init_model(cfg, checkpoint, device='cpu')
        result = inference_model(model, image)
        seg_file = image.replace('images', 'annotations').replace('.jpg', '.png')
        truth = mmcv.imread(seg_file, flag='unchanged').astype('int64') - 1  # reduce_zero_label
        truth[truth < 0] = 255
        import torch
        from mmengine.structures import PixelData
        result.gt_sem_seg = PixelData(data=torch.from_numpy(truth)[None])
        vis = SegLocalVisualizer(name=f'demo_{job}_{time.time()}', alpha=0.6)
        vis.dataset_meta = model.dataset_meta
        vis.add_datasample('prediction', img, result, draw_gt=True, draw_pred=True,
                           out_file=out_file)
    return out_file


def run_job(job, work_dir, data_root, cfg_options=None):
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

    sub = 'coco/val2017' if job == 'maskrcnn' else 'ade/images/validation'
    image = osp.join(data_root, sub, '000001.jpg')
    row['picture'] = save_picture(job, config, osp.join(job_dir, 'fused.pth'), image,
                                  osp.join(work_dir, 'pictures', f'{job}_val_000001.png'),
                                  options)
    return row


def format_summary(rows):
    lines = ['', 'mmrepvit demo: RepViT-M1.1 trained from scratch on CPU (demo data, val split)',
             f'{"model":<24}{"metric":<12}{"unfused":>9}{"fused":>9}{"train":>9}{"test":>8}']
    names = {'maskrcnn': 'Mask R-CNN', 'fpn': 'Semantic FPN'}
    for row in rows:
        for i, (name, _, _) in enumerate(REPORTED[row['job']]):
            label = names[row['job']] if i == 0 else ''
            timing = f'{row["train_s"] / 60:>8.1f}m{row["test_unfused_s"]:>7.0f}s' if i == 0 \
                else ''
            lines.append(f'{label:<24}{name:<12}{row[name + " unfused"]:>9.1f}'
                         f'{row[name + " fused"]:>9.1f}{timing}')
    lines.append('pictures (fused model; truth beside prediction for FPN):')
    lines += [f'  {row["picture"]}' for row in rows]
    return '\n'.join(lines)


def run_demo(work_dir='work_dirs/demo', data_root='data/demo', jobs=('maskrcnn', 'fpn'),
             data_kwargs=None, cfg_options=None):
    """The whole demo. ``data_kwargs`` / ``cfg_options`` shrink it (tests use a tiny run)."""
    start = time.time()
    marker = osp.join(data_root, 'coco', 'annotations', 'instances_val2017.json')
    if not osp.exists(marker):
        print_log(f'making the demo dataset in {data_root}', logger='current')
        make_demo_dataset(data_root, **(data_kwargs or {}))
    os.makedirs(osp.join(work_dir, 'pictures'), exist_ok=True)
    rows = [run_job(job, work_dir, data_root, (cfg_options or {}).get(job)) for job in jobs]
    summary = format_summary(rows) + f'\ntotal time: {(time.time() - start) / 60:.1f} min'
    with open(osp.join(work_dir, 'summary.txt'), 'w') as f:
        f.write(summary + '\n')
    print(summary)
    return rows
