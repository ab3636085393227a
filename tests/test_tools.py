"""End to end on a tiny demo dataset: train -> test (COCO AP / mIoU) -> fuse -> test fused ->
picture, through the library functions behind tools/ and through the command lines."""
import glob
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from model_steps import synthetic_det_batch, synthetic_seg_batch

from mmrepvit.apis import build_model, load_config, prepare_test_cfg, prepare_train_cfg
from mmrepvit.apis import test as run_test
from mmrepvit.apis.demo import DEMO_CONFIGS, REPORTED, _data_options, format_summary, run_demo
from mmrepvit.checkpoint import load_checkpoint_file
from mmrepvit.datasets import DatasetNotFoundError
from mmrepvit.deploy import count_batchnorms, deploy_model_cfg

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def tiny_options(iters=3):
    opts = {'train_cfg.max_iters': iters, 'train_cfg.val_interval': iters,
            'default_hooks.checkpoint.interval': iters, 'default_hooks.logger.interval': 1}
    for split in ('train', 'val', 'test'):
        opts[f'{split}_dataloader.num_workers'] = 0
        opts[f'{split}_dataloader.persistent_workers'] = False
    return opts


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    data_root, work_dir = str(root / 'data'), str(root / 'work')
    rows = run_demo(work_dir, data_root, data_kwargs=dict(num_train=6, num_val=3, progress=False),
                    cfg_options={'maskrcnn': tiny_options(), 'fpn': tiny_options()})
    return dict(rows={r['job']: r for r in rows}, data_root=data_root, work_dir=work_dir)


def test_demo_reports_metrics_and_pictures(demo_run):
    for job, row in demo_run['rows'].items():
        for name, _, _ in REPORTED[job]:
            for variant in ('unfused', 'fused'):
                assert 0 <= row[f'{name} {variant}'] <= 100
            # fused and unfused evaluations agree (to 0.1 points)
            assert abs(row[f'{name} unfused'] - row[f'{name} fused']) <= 0.1
        assert osp.getsize(row['picture']) > 1000
    summary = open(osp.join(demo_run['work_dir'], 'summary.txt')).read()
    assert 'bbox AP50' in summary and 'mIoU' in summary and 'pictures' in summary
    assert format_summary(list(demo_run['rows'].values())) in summary


def test_demo_segmentor_starts_from_the_demo_detector_backbone(demo_run):
    detector = demo_run['rows']['maskrcnn']['checkpoint']
    logs = glob.glob(osp.join(demo_run['work_dir'], 'fpn', '*', '*.log'))
    text = ''.join(open(f).read() for f in logs)
    assert f"backbone keys from checkpoint '{detector}'" in text


@pytest.mark.parametrize('job', ['maskrcnn', 'fpn'])
def test_fused_checkpoint_has_no_batchnorm_and_same_predictions(demo_run, job):
    job_dir = osp.join(demo_run['work_dir'], job)
    options = _data_options(demo_run['data_root'], job)
    cfg = load_config(DEMO_CONFIGS[job], options)
    cfg.model.backbone.init_cfg = None
    model = build_model(cfg)
    model.load_state_dict(load_checkpoint_file(osp.join(job_dir, 'iter_3.pth'))['state_dict'])
    deployed = build_model(Config(dict(cfg, model=deploy_model_cfg(cfg.model))))
    fused_ckpt = load_checkpoint_file(osp.join(job_dir, 'fused.pth'))
    deployed.load_state_dict(fused_ckpt['state_dict'], strict=True)
    assert count_batchnorms(model) > 0 and count_batchnorms(deployed) == 0
    assert not any('bn' in k or 'running_' in k for k in fused_ckpt['state_dict'])
    model.eval(), deployed.eval()
    make = synthetic_det_batch if job == 'maskrcnn' else synthetic_seg_batch
    batch = make(size=(160, 160), num_classes=4, seed=3)
    with torch.no_grad():
        ref, out = model.test_step(batch), deployed.test_step(batch)
    for a, b in zip(ref, out):
        if job == 'maskrcnn':
            pa, pb = a.pred_instances, b.pred_instances
            assert len(pa) == len(pb) and len(pa) > 0
            assert torch.equal(pa.labels, pb.labels)
            assert (pa.bboxes - pb.bboxes).abs().max() <= 1e-3
            assert (pa.masks != pb.masks).float().mean() < 1e-3
        else:
            assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)


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
    assert 'Re-parameterised the model for testing; 0 BatchNorm layers left' in log
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
    assert cfg.model.backbone.deploy is True
    metrics = run_test(cfg)
    assert 0 <= metrics['mIoU'] <= 100
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
    cfg = load_config(osp.join(REPO, 'configs', 'fpn_repvit_m1_1_ade20k.py'))
    model = build_model(cfg)
    with pytest.raises(FileNotFoundError, match='repvit_m1_1_distill_300e.pth'):
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
