"""The demo on built-in data: for Mask R-CNN and Semantic FPN (RepViT-M1.1) train on CPU,
evaluate, fuse, evaluate, draw val images, export an int8 ExecuTorch program, evaluate and time
it; a summary table says which targets were met (docs/demo.md)."""
import itertools
import os
import os.path as osp
import time
import traceback
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.logging import print_log

from ..apis.fuse import fuse_checkpoint_file
from ..apis.infer import build_inferencer, predict
from ..apis.test import evaluate_path, prepare_test_cfg, test
from ..apis.train import prepare_train_cfg, train
from ..checkpoint import load_checkpoint_file
from ..config import config_path
from ..deployment.executorch_detector import export_detector_program
from ..deployment.executorch_program import export_segmentor_program, val_images
from ..model_variants import load_target_config
from ..utils.timing import summarize, time_interleaved
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
# the int8 ExecuTorch app program of each job: its exporter, the val images it is calibrated
# on, and the val images / interleaved rounds its latency is timed on beside the fused model
EXPORT_PROGRAM = {'maskrcnn': export_detector_program, 'fpn': export_segmentor_program}
CALIB_IMAGES = 16
LATENCY_IMAGES, LATENCY_ROUNDS = 4, 20
VARIANTS = ('unfused', 'fused', 'int8 .pte')  # the table's metric columns


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
    """A banner between the toolboxes' progress lines, with the time spent since ``started``."""
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
            started: Optional[float] = None, program: bool = True) -> dict:
    """Train, test, fuse, test fused, draw, then (``program``) the int8 program
    (``program_stage``). Returns the row of the summary table. Stage lines count time from
    ``started`` (default: now)."""
    started = time.time() if started is None else started
    config = DEMO_CONFIGS[job]
    options = dict(_data_options(data_root, job), **(cfg_options or {}))
    job_dir = osp.join(work_dir, job)
    start = time.time()
    cfg = prepare_train_cfg(config, work_dir=job_dir, cfg_options=options)
    cfg.experiment_name = f'{job}_train'
    # no validation inside training: the test of the trained model just below is the same one
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    stage(f'{NAMES[job]}: training {cfg.train_cfg.max_iters} iterations', started)
    checkpoint = osp.join(job_dir, f'iter_{train(cfg).iter}.pth')
    row = dict(job=job, train_s=time.time() - start, checkpoint=checkpoint,
               threads=torch.get_num_threads())
    fused_file = osp.join(job_dir, 'fused.pth')
    # each checkpoint read (or made) once, then handed on
    loaded = {'unfused': load_checkpoint_file(checkpoint)}
    loaded['fused'] = fuse_checkpoint_file(config, loaded['unfused'], fused_file, options)
    for variant, path in (('unfused', checkpoint), ('fused', fused_file)):
        start = time.time()
        stage(f'{NAMES[job]}: testing the {variant} model', started)
        cfg = prepare_test_cfg(config, path, work_dir=job_dir, cfg_options=options)
        cfg.experiment_name = f'{job}_test_{variant}'
        metrics = test(cfg, loaded[variant])
        row[f'test_{variant}_s'] = time.time() - start
        for name, key, scale in REPORTED[job]:
            row[f'{name} {variant}'] = metrics[key] * scale

    stage(f'{NAMES[job]}: drawing {len(PICTURE_INDICES)} val images', started)
    row['picture'] = draw_val_grid(
        config, loaded['fused'], osp.join(work_dir, 'pictures', f'{job}_val.png'),
        PICTURE_INDICES, score_thr=PICTURE_SCORE_THR, cfg_options=options)
    if not program:
        return row
    stage(f'{NAMES[job]}: int8 ExecuTorch program: export, test, latency', started)
    try:
        row.update(program_stage(job, fused_file, osp.join(job_dir, f'{job}_int8.pte'),
                                 job_dir, options))
    except Exception as error:  # said in the summary: the other results stand
        print_log(traceback.format_exc(), logger='current')
        row['program_error'] = f'{type(error).__name__}: {str(error).strip().split(chr(10))[0]}'
    return row


def program_stage(job: str, fused_file: str, path: str, work_dir: str, options: dict) -> dict:
    """Export the fused checkpoint as an int8 ExecuTorch app program for the sizes of the val
    images (one size: a fixed-size program), test it on the val split and time it against
    the fused PyTorch model; returns the table's entries."""
    config = DEMO_CONFIGS[job]
    start = time.time()
    images = val_images(load_target_config(config, options), CALIB_IMAGES)
    sizes = sorted({tuple(image.shape[:2]) for image in images})
    if job == 'maskrcnn' and len(sizes) != 1:
        raise ValueError(f'the val images have sizes {sizes}: a detector program takes one '
                         f'aspect ratio, and the demo exports it for one size '
                         f'(make_demo_dataset makes them all of one)')
    sides = (dict(fixed=True) if len(sizes) == 1 else
             dict(min_size=min(min(s) for s in sizes), max_size=max(max(s) for s in sizes)))
    EXPORT_PROGRAM[job](config, path, checkpoint=fused_file, precision='int8',
                        calibration=images, export_size=sizes[0], cfg_options=options, **sides)
    row = dict(export_s=time.time() - start)
    start = time.time()
    metrics = evaluate_path(config, path, runtime='executorch', precision='int8',
                            work_dir=work_dir, cfg_options=options)
    row['test_program_s'] = time.time() - start
    row.update({f'{name} int8 .pte': metrics[key] * scale for name, key, scale in REPORTED[job]})
    row['latency_ms'] = latency_ms(config, {'fused PyTorch': (fused_file, None),
                                            'int8 .pte': (path, 'executorch')},
                                   images[:LATENCY_IMAGES])
    return row


def latency_ms(config: str, weights: Dict[str, tuple], images: List[torch.Tensor],
               rounds: int = LATENCY_ROUNDS) -> Dict[str, float]:
    """Median ms per image of each model of ``weights`` (name -> (file, runtime)) run as
    ``tools/infer.py`` runs it on the uint8 RGB ``images`` in turn, the models interleaved."""
    bgr = [image.flip(-1).numpy() for image in images]
    calls = {}
    for name, (path, runtime) in weights.items():
        inferencer, feed = build_inferencer(config, path, runtime=runtime), itertools.cycle(bgr)
        calls[name] = lambda inferencer=inferencer, feed=feed: predict(inferencer, next(feed))
    times = time_interleaved(calls, rounds, warmup=len(bgr))
    return {name: summarize(seconds)['median_ms'] for name, seconds in times.items()}


def _worst(row: dict, name: str) -> float:
    """The lowest value of metric ``name`` over the models of ``row`` measured."""
    return min(row[f'{name} {v}'] for v in VARIANTS if f'{name} {v}' in row)


def failures(rows: List[dict]) -> List[str]:
    """What went wrong in a demo run: each target not met, each program not made."""
    return [f'{NAMES[row["job"]]}: int8 program: {row["program_error"]}'
            for row in rows if 'program_error' in row] + [
        f'{NAMES[row["job"]]}: {name} {_worst(row, name):.1f} < {TARGETS[name]:g}'
        for row in rows for name, _, _ in REPORTED[row['job']]
        if name in TARGETS and met(name, _worst(row, name)) == 'NO']


def met(name: str, value: float) -> str:
    target = TARGETS.get(name)
    return '' if target is None else ('yes' if value >= target else 'NO')


def format_summary(rows: List[dict]) -> str:
    """The table: each reported metric of each model, the targets and whether every model met
    them, times; then the latency per image and the pictures."""
    lines = ['', 'mmrepvit demo: RepViT-M1.1 on CPU, demo data (val split)',
             f'{"model":<15}{"metric":<12}{"unfused":>9}{"fused":>9}{"int8 .pte":>11}'
             f'{"target":>9}{"met":>5}{"train":>9}{"test":>7}{"export":>8}']
    for row in rows:
        model, timing = NAMES[row['job']], (
            f'{row["train_s"] / 60:>8.1f}m{row["test_unfused_s"]:>6.0f}s'
            + (f'{row["export_s"]:>7.0f}s' if 'export_s' in row else f'{"-":>8}'))
        for name, _, _ in REPORTED[row['job']]:
            unfused, fused, program = (row.get(f'{name} {variant}') for variant in VARIANTS)
            target = f'>= {TARGETS[name]:g}' if name in TARGETS else ''
            lines.append(f'{model:<15}{name:<12}{unfused:>9.1f}{fused:>9.1f}'
                         f'{"n/a" if program is None else f"{program:.1f}":>11}{target:>9}'
                         f'{met(name, _worst(row, name)):>5}{timing}')
            model = timing = ''  # on the first line of the model only
    lines.append(f'latency on this CPU, ms per image (median, {rows[0]["threads"]} torch '
                 f'thread(s); {LATENCY_IMAGES} val images, the models interleaved):')
    for row in rows:
        if 'latency_ms' in row:
            times = row['latency_ms']
            lines.append(f'  {NAMES[row["job"]]:<13}' + ', '.join(
                f'{name} {ms:.1f}' for name, ms in times.items()) +
                f' ({times["fused PyTorch"] / times["int8 .pte"]:.1f}x)')
        elif 'program_error' in row:
            lines.append(f'  {NAMES[row["job"]]:<13}int8 .pte not available: '
                         f'{row["program_error"]}')
    lines.append(f'pictures (fused models; detections scored >= {PICTURE_SCORE_THR:g}):')
    lines += [f'  {row["picture"]}' for row in rows]
    return '\n'.join(lines)


def run_demo(work_dir: str = 'work_dirs/demo', data_root: str = 'data/demo',
             jobs: Sequence[str] = ('maskrcnn', 'fpn'), data_kwargs: Optional[dict] = None,
             cfg_options: Optional[Dict[str, dict]] = None,
             programs: Sequence[str] = ('maskrcnn', 'fpn')) -> List[dict]:
    """The whole demo; an int8 program for the jobs in ``programs``. ``data_kwargs`` /
    ``cfg_options`` shrink it (tests use a tiny run)."""
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
        rows.append(run_job(job, work_dir, data_root, options, start, job in programs))
    summary = format_summary(rows) + f'\ntotal time: {(time.time() - start) / 60:.1f} min'
    with open(osp.join(work_dir, 'summary.txt'), 'w') as f:
        f.write(summary + '\n')
    print(summary)
    return rows
