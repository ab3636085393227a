"""Kill-and-resume: a run killed with SIGKILL between checkpoints and restarted with
``--resume`` ends exactly where an uninterrupted run does."""
import os
import signal
import time

import pytest
import torch
from tiny_runs import kill_group, make_data, run_tool, start_tool, write_seg_config

from mmrepvit.checkpoint import load_checkpoint_file
from mmrepvit.engine import find_resumable_checkpoint

MAX_ITERS, INTERVAL, KILL_AFTER = 8, 2, 5


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('resume')
    config = write_seg_config(root / 'tiny_fpn.py', make_data(root / 'data'),
                              max_iters=MAX_ITERS, interval=INTERVAL)
    return root, config


def losses(checkpoint):
    return list(checkpoint['message_hub']['log_scalars']['train/loss'].data[0])


def assert_same_tensors(a, b, what):
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f'{what}: {len(differ)} differ, e.g. {differ[:3]}'


def wait_for(path, proc, timeout=180):
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f'the run ended before {path.name}:\n{proc.stdout.read()}'
        assert time.time() < end, f'{path} did not appear in {timeout}s'
        time.sleep(0.1)


@pytest.mark.slow  # two training runs to the end: make test-slow
def test_sigkill_then_resume_equals_uninterrupted_run(setup):
    root, config = setup
    straight = root / 'straight'
    run_tool('train', config, '--work-dir', straight)

    work, marker = root / 'killed', root / 'paused'
    proc = start_tool('train', config, '--work-dir', work, MMREPVIT_TEST_PAUSE_AT=KILL_AFTER,
                      MMREPVIT_TEST_PAUSE_MARKER=marker)
    try:
        wait_for(marker, proc)  # iteration 5 done: after checkpoint 4, before checkpoint 6
    finally:
        kill_group(proc, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    saved = sorted(p.name for p in work.glob('iter_*.pth'))
    assert saved == ['iter_2.pth', 'iter_4.pth']
    assert (work / 'last_checkpoint').read_text().strip() == str(work / 'iter_4.pth')

    log = run_tool('train', config, '--work-dir', work, '--resume')
    assert 'resumed epoch: 0, iter: 4' in log
    assert f'Iter(train) [{KILL_AFTER}/{MAX_ITERS}]' in log  # iteration 5 is trained again

    final = load_checkpoint_file(work / f'iter_{MAX_ITERS}.pth')
    expected = load_checkpoint_file(straight / f'iter_{MAX_ITERS}.pth')
    assert final['meta']['iter'] == expected['meta']['iter'] == MAX_ITERS
    assert final['message_hub']['runtime_info']['iter'] == MAX_ITERS - 1  # 0-based, last run
    # weights (and BatchNorm statistics), optimiser moments and step, LR schedule
    assert_same_tensors(final['state_dict'], expected['state_dict'], 'weights')
    for key, state in expected['optimizer']['state'].items():
        for name, value in state.items():
            assert torch.equal(final['optimizer']['state'][key][name], value), (key, name)
    assert final['optimizer']['param_groups'][0]['lr'] == expected['optimizer'][
        'param_groups'][0]['lr']
    assert final['param_schedulers'] == expected['param_schedulers']
    # the same batches, augmented the same way: every iteration's loss is the same
    assert len(losses(final)) == MAX_ITERS
    assert losses(final) == losses(expected)


def test_resume_skips_a_checkpoint_the_kill_left_unusable(tmp_path):
    """``--resume`` without a path: ``last_checkpoint``'s file unless it is missing or
    truncated, then the newest complete one."""
    def save(name):
        torch.save({'meta': {'iter': int(name[5:-4])}}, tmp_path / name)
        return str(tmp_path / name)

    assert find_resumable_checkpoint(str(tmp_path)) is None
    iter_2, iter_4 = save('iter_2.pth'), save('iter_4.pth')
    (tmp_path / 'last_checkpoint').write_text(iter_2)
    assert find_resumable_checkpoint(str(tmp_path)) == iter_2
    # max_keep_ckpts deleted the named file, then the kill hit while saving the next one
    os.remove(iter_2)
    iter_6 = save('iter_6.pth')
    with open(iter_6, 'r+b') as f:
        f.truncate(100)
    assert find_resumable_checkpoint(str(tmp_path)) == iter_4
