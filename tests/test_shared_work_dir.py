"""Runs that share a work dir keep their own results: two test runs started in the same second
get two run folders (two metrics files, two logs); a second training run on a work dir that a
first one is writing checkpoints into is refused, naming the dir and the process."""
import glob
import json
import os.path as osp
import time
import types
from unittest import mock

import pytest
from tiny_runs import make_data, run_tool, write_seg_config

from mmrepvit.apis import prepare_test_cfg, prepare_train_cfg, train
from mmrepvit.apis import test as run_test
from mmrepvit.engine import training_lock


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('shared_work_dir')
    data = make_data(root / 'data')
    config = write_seg_config(root / 'seg.py', data, max_iters=4, interval=4)
    train(prepare_train_cfg(config, work_dir=str(root / 'train'),
                            cfg_options=dict(experiment_name='shared_work_dir')))
    return dict(config=config, checkpoint=str(root / 'train' / 'iter_4.pth'))


def test_two_test_runs_in_the_same_second_keep_both_results(trained, tmp_path):
    """mmengine names a run's folder after the second it started; the clock is held still
    here so both runs start in the same second, as two jobs launched together do."""
    work_dir = str(tmp_path / 'shared')
    frozen = types.SimpleNamespace(time=lambda: 1.7e9, strftime=time.strftime,
                                   localtime=time.localtime)
    metrics = []
    with mock.patch('mmengine.runner.runner.time', frozen):
        for frac in (1.0, 0.5):  # two different evaluations: the second must not replace the first
            cfg = prepare_test_cfg(trained['config'], trained['checkpoint'], work_dir=work_dir,
                                   cfg_options={'test_dataloader.dataset.indices': int(5 * frac)})
            metrics.append(run_test(cfg))
    folders = sorted(glob.glob(osp.join(work_dir, '*', '')))
    assert len(folders) == 2, folders
    found = []
    for folder in folders:
        json_files = glob.glob(osp.join(folder, '*.json'))
        logs = glob.glob(osp.join(folder, '*.log'))
        assert len(json_files) == 1 and len(logs) == 1, (folder, json_files, logs)
        found.append(json.loads(open(json_files[0]).read().splitlines()[-1])['mIoU'])
    assert sorted(found) == pytest.approx(sorted(m['mIoU'] for m in metrics), abs=0.01)


def test_a_second_training_run_on_a_busy_work_dir_is_refused(trained, tmp_path):
    work_dir = tmp_path / 'busy'
    with training_lock(str(work_dir)):  # a first run, writing checkpoints there
        out = run_tool('train', trained['config'], '--work-dir', work_dir, expect_ok=False)
    assert 'WorkDirBusyError' in out, out[-3000:]
    assert f"Work dir '{work_dir}' is in use by another training run (pid " in out
    assert not glob.glob(str(work_dir / '*.pth'))
    # the lock goes with the run: the work dir is free again
    with training_lock(str(work_dir)):
        pass
