"""The main job on built-in data: make the demo data, then for Mask R-CNN and Semantic FPN
(RepViT-M1.1): train on CPU, evaluate, fuse, evaluate the fused model, and draw val images
(truth beside prediction); a summary table says which targets were met."""
import os
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence

from mmengine.logging import print_log

from ..apis.fuse import fuse_checkpoint_file
from ..apis.test import prepare_test_cfg, test
from ..apis.train import prepare_train_cfg, train
from ..checkpoint import load_checkpoint_file
from ..config import config_path
from .data import demo_dataset_is_current, make_demo_dataset
from .pictures import draw_val_grid

DEMO_CONFIGS = {
    'maskrcnn': config_path('demo/maskrcnn_repvit_m1_1_demo.py'),
    'fpn': config_path('demo/fpn_repvit_m1_1_demo.py'),
}
# what the demo must reach on its val split (every run, any machine)
TARGETS = {'bbox AP50': 50.0, 'mIoU': 50.0}
PICTURE_SCORE_THR = 0.5  # detections drawn in the pictures
PICTURE_INDICES = (0, 1, 2, 3, 4)  # val images drawn
# the metrics each job reports, as (name in the table, key in the metrics dict, scale)
REPORTED = {
    'maskrcnn': [('bbox AP50', 'coco/bbox_mAP_50', 100), ('bbox AP', 'coco/bbox_mAP', 100),
                 ('segm AP50', 'coco/segm_mAP_50', 100), ('segm AP', 'coco/segm_mAP', 100)],
    'fpn': [('mIoU', 'mIoU', 1), ('aAcc', 'aAcc', 1)],
}


NAMES = {'maskrcnn': 'Mask R-CNN', 'fpn': 'Semantic FPN'}


def torch_threads(requested: Optional[int], omp_num_threads: Optional[str],
                  cpus: int) -> int:
    """``requested``, else the first number of ``$OMP_NUM_THREADS`` (e.g. "2" or "2,1"), else
    ``cpus``; anything that is not a positive number is an error naming it."""
    if requested is None and omp_num_threads:
        first = omp_num_threads.split(',')[0].strip()
        if not first.isdigit() or int(first) < 1:
            raise ValueError(f'OMP_NUM_THREADS={omp_num_threads!r} is not a positive number of '
                             f'threads; unset it or pass --threads N')
        return int(first)
    threads = cpus if requested is None else requested
    if threads < 1:
        raise ValueError(f'--threads {threads}: give a positive number of threads')
    return threads


def stage(text: str, started: float) -> None:
    """A banner between the toolboxes' own progress lines, with the time spent since
    ``started``."""
    spent = time.time() - started
    print_log(f'[demo {int(spent // 60):d}:{int(spent % 60):02d}] {text}', logger='current')


def _data_options(data_root, job):
    sub = osp.join(data_root, 'coco' if job == 'maskrcnn' else 'ade') + '/'
    opts = {f'{split}_dataloader.dataset.data_root': sub for split in ('train', 'val', 'test')}
    if job == 'maskrcnn':
        ann = osp.join(sub, 'annotations', 'instances_val2017.json')
        opts.update({'val_evaluator.ann_file': ann, 'test_evaluator.ann_file': ann})
    return opts


def run_job(job: str, work_dir: str, data_root: str, cfg_options: Optional[dict] = None,
            started: Optional[float] = None) -> dict:
    """Train, test, fuse, test fused, draw. Returns the row of the summary table. Stage lines
    count time from ``started`` (default: now)."""
    started = time.time() if started is None else started
    config = DEMO_CONFIGS[job]
    options = dict(_data_options(data_root, job), **(cfg_options or {}))
    job_dir = osp.join(work_dir, job)
    row = dict(job=job)

    start = time.time()
    cfg = prepare_train_cfg(config, work_dir=job_dir, cfg_options=options)
    cfg.experiment_name = f'{job}_train'
    # no validation inside training: the test of the trained model just below is the same one
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    stage(f'{NAMES[job]}: training {cfg.train_cfg.max_iters} iterations', started)
    runner = train(cfg)
    row['train_s'] = time.time() - start
    checkpoint = osp.join(job_dir, f'iter_{runner.iter}.pth')
    row['checkpoint'] = checkpoint
    fused_file = osp.join(job_dir, 'fused.pth')
    # each checkpoint read (or made) once, then handed on
    loaded = {'unfused': load_checkpoint_file(checkpoint)}

    for variant in ('unfused', 'fused'):
        if variant == 'fused':
            loaded['fused'] = fuse_checkpoint_file(config, loaded['unfused'], fused_file, options)
        start = time.time()
        stage(f'{NAMES[job]}: testing the {variant} model', started)
        cfg = prepare_test_cfg(config, checkpoint if variant == 'unfused' else fused_file,
                               work_dir=job_dir, cfg_options=options)
        cfg.experiment_name = f'{job}_test_{variant}'
        metrics = test(cfg, loaded[variant])
        row[f'test_{variant}_s'] = time.time() - start
        for name, key, scale in REPORTED[job]:
            row[f'{name} {variant}'] = metrics[key] * scale

    stage(f'{NAMES[job]}: drawing {len(PICTURE_INDICES)} val images', started)
    row['picture'] = draw_val_grid(
        config, loaded['fused'], osp.join(work_dir, 'pictures', f'{job}_val.png'),
        PICTURE_INDICES, score_thr=PICTURE_SCORE_THR, cfg_options=options)
    return row


def met(name: str, value: float) -> str:
    target = TARGETS.get(name)
    return '' if target is None else ('yes' if value >= target else 'NO')


def format_summary(rows: List[dict]) -> str:
    lines = ['', 'mmrepvit demo: RepViT-M1.1 on CPU, demo data (val split)',
             f'{"model":<15}{"metric":<12}{"unfused":>9}{"fused":>9}{"target":>9}{"met":>5}'
             f'{"train":>9}{"test":>7}']
    for row in rows:
        for i, (name, _, _) in enumerate(REPORTED[row['job']]):
            label = NAMES[row['job']] if i == 0 else ''
            target = f'>= {TARGETS[name]:g}' if name in TARGETS else ''
            timing = f'{row["train_s"] / 60:>8.1f}m{row["test_unfused_s"]:>6.0f}s' if i == 0 \
                else ''
            lines.append(f'{label:<15}{name:<12}{row[name + " unfused"]:>9.1f}'
                         f'{row[name + " fused"]:>9.1f}{target:>9}'
                         f'{met(name, min(row[name + " unfused"], row[name + " fused"])):>5}'
                         f'{timing}')
    lines.append(f'pictures (fused models; detections scored >= {PICTURE_SCORE_THR:g}):')
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
        rows.append(run_job(job, work_dir, data_root, options, started=start))
    summary = format_summary(rows) + f'\ntotal time: {(time.time() - start) / 60:.1f} min'
    with open(osp.join(work_dir, 'summary.txt'), 'w') as f:
        f.write(summary + '\n')
    print(summary)
    return rows
