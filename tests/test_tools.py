"""End to end on a tiny demo dataset: train -> test (COCO AP / mIoU) -> fuse -> test fused ->
picture, through the library functions behind tools/ and through the command lines."""
import glob
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from model_steps import synthetic_det_batch, synthetic_seg_batch
from tiny_runs import make_data, write_seg_config

from mmrepvit.apis import build_model, load_config, prepare_test_cfg, prepare_train_cfg, train
from mmrepvit.apis import test as run_test
from mmrepvit.checkpoint import (
    CheckpointDownloadError,
    load_checkpoint_file,
    load_model_checkpoint,
)
from mmrepvit.config import config_from_text
from mmrepvit.datasets import DatasetNotFoundError
from mmrepvit.demo.run import (
    DEMO_CONFIGS,
    REPORTED,
    _data_options,
    format_summary,
    met,
)
from mmrepvit.fusion import count_batchnorms, fuse_model

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_demo_reports_metrics_targets_and_pictures(demo_run):
    import cv2
    for job, row in demo_run['rows'].items():
        for name, _, _ in REPORTED[job]:
            for variant in ('unfused', 'fused'):
                assert 0 <= row[f'{name} {variant}'] <= 100
            # fused and unfused evaluations agree (to 0.1 points)
            assert abs(row[f'{name} unfused'] - row[f'{name} fused']) <= 0.1
        # a grid of the (3) tiny val images, each enlarged 3x from 160 pixels: truth beside
        # prediction (detector), image / truth / prediction (segmentor), a legend below
        picture = cv2.imread(row['picture'])
        columns = 2 if job == 'maskrcnn' else 3
        assert picture.shape[1] == columns * 480 + (columns - 1) * 6
        assert picture.shape[0] > 3 * 480
    summary = open(osp.join(demo_run['work_dir'], 'summary.txt')).read()
    assert format_summary(list(demo_run['rows'].values())) in summary
    # each targeted metric's line names its target and whether the worse of unfused / fused
    # met it; a 3-iteration model meets neither
    for job, metric in (('maskrcnn', 'bbox AP50'), ('fpn', 'mIoU')):
        row = demo_run['rows'][job]
        line = next(line for line in summary.splitlines() if f' {metric} ' in line)
        assert '>= 50' in line and f' {met(metric, row[metric + " fused"])} ' in line + ' '
        assert met(metric, row[metric + ' fused']) == 'NO'
    assert met('bbox AP50', 50.0) == 'yes' and met('bbox AP', 1.0) == ''
    assert 'scored >= 0.5' in summary


@pytest.mark.slow
def test_demo_program_stage_exports_tests_and_times_an_int8_program(demo_run):
    """The demo's last stage on its trained Semantic FPN: an int8 ExecuTorch program exported
    from the fused checkpoint, tested on the val split (its numbers beside the checkpoint's in
    the table) and timed against the fused model."""
    import re

    from conftest import tiny_options

    from mmrepvit.demo.run import _data_options, format_summary, program_stage
    work = osp.join(demo_run['work_dir'], 'fpn')
    options = dict(_data_options(demo_run['data_root'], 'fpn'), **tiny_options())
    row = dict(demo_run['rows']['fpn'], **program_stage(
        'fpn', osp.join(work, 'fused.pth'), osp.join(work, 'program_int8.pte'), work, options))
    assert osp.getsize(osp.join(work, 'program_int8.pte')) > 10**6
    value = row['mIoU int8 .pte']
    assert 0 <= value <= 100 and abs(value - row['mIoU fused']) < 5
    assert row['latency_ms']['fused PyTorch'] > 0 and row['latency_ms']['int8 .pte'] > 0
    summary = format_summary([demo_run['rows']['maskrcnn'], row])
    line = next(line for line in summary.splitlines() if ' mIoU ' in line)
    assert f' {value:.1f} ' in line
    assert re.search(r'Semantic FPN +fused PyTorch [0-9.]+, int8 \.pte [0-9.]+ \([0-9.]+x\)',
                     summary)
    assert ' n/a ' in next(line for line in summary.splitlines() if ' bbox AP50 ' in line)


def test_demo_fails_on_a_missed_target_or_a_failed_program():
    """``tools/demo.py`` exits non-zero on either (``failures``): never a quiet success."""
    from mmrepvit.demo.run import failures
    good = dict(job='fpn', **{'mIoU unfused': 60.0, 'mIoU fused': 60.0, 'mIoU int8 .pte': 59.0})
    assert failures([good]) == []
    assert failures([dict(good, **{'mIoU int8 .pte': 0.0})]) == ['Semantic FPN: mIoU 0.0 < 50']
    assert failures([dict(good, program_error='ValueError: x')]) == [
        'Semantic FPN: int8 program: ValueError: x']


def test_demo_segmentor_starts_from_the_demo_detector_backbone(demo_run):
    detector = demo_run['rows']['maskrcnn']['checkpoint']
    logs = glob.glob(osp.join(demo_run['work_dir'], 'fpn', '*', '*.log'))
    text = ''.join(open(f).read() for f in logs)
    assert f"backbone keys from checkpoint '{detector}'" in text


@pytest.mark.parametrize('job', ['maskrcnn', 'fpn'])
def test_fused_checkpoint_and_fully_fused_model_predict_as_trained(demo_run, job):
    """The fused checkpoint holds the backbone fused (no backbone BN) and the rest as trained;
    it loads strictly into the training config's model; fusing the rest in memory
    (``fuse_model``) leaves no BatchNorm; all three predict the same."""
    job_dir = osp.join(demo_run['work_dir'], job)
    cfg = load_config(DEMO_CONFIGS[job], _data_options(demo_run['data_root'], job))
    cfg.model.backbone.init_cfg = None
    plain, fused = build_model(cfg), build_model(cfg)
    load_model_checkpoint(plain, osp.join(job_dir, 'iter_3.pth'))
    fused_ckpt = load_model_checkpoint(fused, osp.join(job_dir, 'fused.pth'))
    backbone_keys = [k for k in fused_ckpt['state_dict'] if k.startswith('backbone.')]
    assert backbone_keys and not any('.bn.' in k for k in backbone_keys)
    assert fused.backbone.deploy and not plain.backbone.deploy
    assert fused_ckpt['meta']['mmrepvit_fused'] == dict(backbone=True, head_norms=False)
    assert 'cfg' in fused_ckpt['meta'] and 'dataset_meta' in fused_ckpt['meta']
    everything = build_model(cfg)
    load_model_checkpoint(everything, fused_ckpt)
    fuse_model(everything)
    assert count_batchnorms(plain) > 0 and count_batchnorms(everything) == 0
    make = synthetic_det_batch if job == 'maskrcnn' else synthetic_seg_batch
    batch = make(size=(160, 160), num_classes=4, seed=3)
    plain.eval()
    with torch.no_grad():
        ref = plain.test_step(batch)
        outs = [m.test_step(batch) for m in (fused.eval(), everything.eval())]
    for out in outs:
        for a, b in zip(ref, out):
            if job == 'maskrcnn':
                pa, pb = a.pred_instances, b.pred_instances
                assert len(pa) == len(pb) and len(pa) > 0
                assert torch.equal(pa.labels, pb.labels)
                assert (pa.bboxes - pb.bboxes).abs().max() <= 1e-3
                assert (pa.masks != pb.masks).float().mean() < 1e-3
            else:
                assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)
                torch.testing.assert_close(a.seg_logits.data, b.seg_logits.data, atol=1e-4,
                                           rtol=1e-4)


def test_runner_and_fused_checkpoints_config_reads_as_data(demo_run):
    """The config mmengine's Runner (and fusing) writes into a checkpoint reads back as data,
    without running it, to what running it gives (what tools/infer.py does without a config)."""
    for job in ('maskrcnn', 'fpn'):
        for name in ('iter_3.pth', 'fused.pth'):
            path = osp.join(demo_run['work_dir'], job, name)
            text = load_checkpoint_file(path)['meta']['cfg']
            assert repr(config_from_text(text, path, 'no remedy').to_dict()) == \
                repr(Config.fromstring(text, '.py').to_dict())


def test_cli_test_with_fuse_out_and_show_dir(demo_run, tmp_path):
    job_dir = osp.join(demo_run['work_dir'], 'maskrcnn')
    ckpt = osp.join(job_dir, 'iter_3.pth')
    options = _data_options(demo_run['data_root'], 'maskrcnn')
    args = [sys.executable, osp.join(REPO, 'tools', 'test.py'), DEMO_CONFIGS['maskrcnn'], ckpt,
            '--fuse', '--work-dir', str(tmp_path), '--out', str(tmp_path / 'results.pkl'),
            '--show-dir', 'pictures', '--cfg-options']
    args += [f'{k}={v}' for k, v in options.items()]
    out = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert 'Fused the model for testing; 0 BatchNorm layers left' in log
    assert 'coco/bbox_mAP' in log and 'coco/segm_mAP' in log
    assert (tmp_path / 'results.pkl').stat().st_size > 0
    pictures = list(tmp_path.rglob('pictures/*.jpg')) + list(tmp_path.rglob('pictures/*.png'))
    assert len(pictures) == 3


def test_cli_segmentation_out_dir(demo_run, tmp_path):
    job_dir = osp.join(demo_run['work_dir'], 'fpn')
    options = _data_options(demo_run['data_root'], 'fpn')
    cfg = prepare_test_cfg(DEMO_CONFIGS['fpn'], osp.join(job_dir, 'fused.pth'),
                           work_dir=str(tmp_path), out=str(tmp_path / 'maps'),
                           cfg_options=options)
    metrics = run_test(cfg)
    row = demo_run['rows']['fpn']
    assert metrics['mIoU'] == pytest.approx(row['mIoU unfused'], abs=0.01)
    assert metrics['aAcc'] == pytest.approx(row['aAcc unfused'], abs=0.01)
    assert len(list((tmp_path / 'maps').glob('*.png'))) == 3


def test_missing_dataset_names_path_layout_and_source(tmp_path):
    from mmrepvit.apis import train
    cfg = prepare_train_cfg(osp.join(REPO, 'configs', 'maskrcnn_repvit_m1_1_coco.py'),
                            work_dir=str(tmp_path),
                            cfg_options={'train_dataloader.dataset.data_root':
                                         str(tmp_path / 'nowhere') + '/'})
    with pytest.raises(DatasetNotFoundError) as info:
        train(cfg)
    message = str(info.value)
    assert str(tmp_path / 'nowhere') in message
    assert 'instances_train2017.json' in message and 'cocodataset.org' in message


def test_missing_pretrained_file_is_named(tmp_path):
    """The configs name the release's URL; the tests' mirror (conftest) has no files."""
    cfg = load_config(osp.join(REPO, 'configs', 'fpn_repvit_m1_1_ade20k.py'))
    model = build_model(cfg)
    with pytest.raises(CheckpointDownloadError, match='v1.0/repvit_m1_1_distill_300e.pth'):
        model.init_weights()


def test_train_cli_flags(tmp_path):
    config = osp.join(REPO, 'configs', 'maskrcnn_repvit_m1_1_coco.py')
    cfg = prepare_train_cfg(config, auto_scale_lr=True, resume='auto',
                            cfg_options={'model.backbone.arch': 'm1_5'})
    assert cfg.auto_scale_lr.enable and cfg.resume is True and cfg.load_from is None
    assert cfg.work_dir == osp.join('work_dirs', 'maskrcnn_repvit_m1_1_coco')
    assert cfg.model.backbone.arch == 'm1_5'
    with pytest.raises(FileNotFoundError, match='nothere.pth'):
        prepare_train_cfg(config, resume=str(tmp_path / 'nothere.pth'))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match='--amp needs a CUDA device'):
            prepare_train_cfg(config, amp=True)
    with pytest.raises(ValueError, match="default_scope=None"):
        bad = tmp_path / 'bad.py'
        bad.write_text('model = dict(type="X")\n')
        prepare_train_cfg(str(bad))


def test_tiny_segmentation_train_then_test_gives_python_numbers(tmp_path):
    """Four training iterations and a test on tiny ADE20K-layout data. The metrics are Python
    floats, so they go to JSON as they are, under numpy 2 too (where mmseg returns
    ``np.float32``)."""
    config = write_seg_config(tmp_path / 'seg.py', make_data(tmp_path / 'data'),
                              max_iters=4, interval=4)
    train(prepare_train_cfg(config, work_dir=str(tmp_path / 'work')))
    metrics = run_test(prepare_test_cfg(config, str(tmp_path / 'work' / 'iter_4.pth'),
                                        work_dir=str(tmp_path / 'test')))
    assert {'aAcc', 'mIoU', 'mAcc'} <= set(metrics)
    assert all(type(value) is float for value in metrics.values()), metrics
    assert json.loads(json.dumps(metrics)) == metrics
