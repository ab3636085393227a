"""Multi-process training and testing on CPU: ``tools/dist_train.sh`` /
``tools/dist_test.sh`` with 2 gloo processes on a tiny Semantic FPN RepViT-M0.6 run."""
import json
import subprocess
import sys

import pytest
import torch
from tiny_runs import REPO, free_port, make_data, run_tool, tool_env, write_seg_config

from mmrepvit.checkpoint import load_checkpoint_file

MAX_ITERS = 6


@pytest.fixture(scope='module')
def two_process_run(tmp_path_factory):
    root = tmp_path_factory.mktemp('dist')
    config = write_seg_config(root / 'tiny_fpn.py', make_data(root / 'data'),
                              max_iters=MAX_ITERS, interval=3)
    work = root / 'work'
    log = run_tool('train', config, '--work-dir', work, nproc=2)
    return config, work, log


def load_json(path):
    return json.loads(path.read_text())


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f'{len(differ)} tensors differ, e.g. {differ[:3]}'


@pytest.mark.slow  # several training processes: make test-slow
def test_two_processes_train_checkpoint_and_agree(two_process_run):
    _, work, log = two_process_run
    assert 'Distributed training: True' in log
    assert "'backend': 'gloo'" in log
    assert 'SyncBN replaced by BN' in log  # the mmseg base config's SyncBN, on CPU
    checkpoint = load_checkpoint_file(work / f'iter_{MAX_ITERS}.pth')
    assert checkpoint['meta']['iter'] == MAX_ITERS
    assert (work / 'iter_3.pth').is_file()
    # every parameter and buffer (BatchNorm statistics included) is the same on both ranks,
    # and is what the checkpoint holds
    rank0 = torch.load(work / 'rank0_state.pth', weights_only=True)
    rank1 = torch.load(work / 'rank1_state.pth', weights_only=True)
    assert_same_state(rank0, rank1)
    assert_same_state(rank0, checkpoint['state_dict'])
    assert any('running_mean' in k for k in rank0)
    # the evaluation at the end of training is gathered from both ranks: each reports all of it
    assert load_json(work / 'val_rank0.json') == load_json(work / 'val_rank1.json')


@pytest.mark.slow  # several training processes: make test-slow
def test_two_process_test_equals_one_process_test(two_process_run, tmp_path):
    config, work, _ = two_process_run
    checkpoint = work / f'iter_{MAX_ITERS}.pth'
    run_tool('test', config, checkpoint, '--work-dir', tmp_path / 'one')
    run_tool('test', config, checkpoint, '--work-dir', tmp_path / 'two', nproc=2)
    one = load_json(tmp_path / 'one' / 'test_rank0.json')
    two = [load_json(tmp_path / 'two' / f'test_rank{r}.json') for r in (0, 1)]
    assert one['metrics'] == two[0]['metrics'] == two[1]['metrics']
    assert one['metrics'] == load_json(work / 'val_rank0.json')  # the in-training evaluation
    # 5 images on 2 ranks: 3 each, one repeated to even them out (and dropped from the
    # metrics); every image's prediction is its one-process prediction
    assert [len(t['predictions']) for t in two] == [3, 3]
    merged = {**two[0]['predictions'], **two[1]['predictions']}
    assert len(one['predictions']) == 5 and merged.keys() == one['predictions'].keys()
    for part in two:
        for name, (logit_sum, label_sum) in part['predictions'].items():
            assert label_sum == one['predictions'][name][1]
            assert logit_sum == pytest.approx(one['predictions'][name][0], rel=1e-5, abs=1e-3)


@pytest.mark.slow  # several training processes: make test-slow
def test_two_process_resume_matches_the_uninterrupted_run(two_process_run, tmp_path):
    """Each rank's random states come back from the checkpoint: the resumed 2-process run
    ends with the uninterrupted run's weights."""
    config, work, _ = two_process_run
    resumed = tmp_path / 'resumed'
    log = run_tool('train', config, '--work-dir', resumed, '--resume', work / 'iter_3.pth',
                   nproc=2)
    assert 'resumed epoch: 0, iter: 3' in log
    final = load_checkpoint_file(resumed / f'iter_{MAX_ITERS}.pth')
    expected = load_checkpoint_file(work / f'iter_{MAX_ITERS}.pth')
    assert final['meta']['iter'] == MAX_ITERS
    assert_same_state(final['state_dict'], expected['state_dict'])


FAKE_SRUN = '''#!/usr/bin/env bash
# stand-in for srun: runs the command --ntasks times here, with SLURM's variables
n=1
while [[ $1 == -* ]]; do
  case $1 in
    -p) shift ;;
    --ntasks=*) n=${1#*=} ;;
  esac
  shift
done
pids=()
for ((i = 0; i < n; i++)); do
  SLURM_PROCID=$i SLURM_LOCALID=$i SLURM_NTASKS=$n SLURM_NODELIST=localhost \\
    MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait $pid || status=1; done
exit $status
'''


@pytest.mark.slow  # several training processes: make test-slow
def test_slurm_launcher_on_cpu(two_process_run, tmp_path):
    """``tools/slurm_train.sh`` (srun faked) with GRES= on a CPU-only machine: the same
    2-process run as torchrun's."""
    config, work, _ = two_process_run
    srun = tmp_path / 'bin' / 'srun'
    srun.parent.mkdir()
    srun.write_text(FAKE_SRUN)
    srun.chmod(0o755)
    slurm_work = tmp_path / 'slurm'
    proc = subprocess.run(
        ['bash', str(REPO / 'tools/slurm_train.sh'), 'cpu', 'tiny', config, str(slurm_work)],
        cwd=REPO, env=tool_env(PATH=f'{srun.parent}:{tool_env()["PATH"]}', GRES='', GPUS=2,
                               GPUS_PER_NODE=2, PORT=free_port()),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert 'Distributed launcher: slurm' in proc.stdout
    rank0 = torch.load(slurm_work / 'rank0_state.pth', weights_only=True)
    assert_same_state(rank0, torch.load(slurm_work / 'rank1_state.pth', weights_only=True))
    assert_same_state(rank0, load_checkpoint_file(work / f'iter_{MAX_ITERS}.pth')['state_dict'])


GLOO_EXIT_SCRIPT = r'''
import atexit, os, sys
import torch
from mmengine.config import Config
from mmrepvit.engine.distributed import setup_cpu_distributed

def threads():
    return len(os.listdir('/proc/self/task'))

before = threads()
setup_cpu_distributed(Config(dict(launcher='pytorch', model=dict(type='X'))))
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
model(torch.ones(1, 2)).sum().backward()
model.cycle = [model]  # held only by a reference cycle, as the runner's model is at exit
del model
during = threads()
atexit._run_exitfuncs()
print(before, during, threads())
'''


def test_the_gloo_group_is_torn_down_before_interpreter_exit():
    """The group ``setup_cpu_distributed`` creates is destroyed at exit with its worker
    threads joined; a worker left alive into finalisation can abort a finished rank."""
    env = tool_env(RANK='0', WORLD_SIZE='1', LOCAL_RANK='0', MASTER_ADDR='127.0.0.1',
                   MASTER_PORT=str(free_port()))
    out = subprocess.run([sys.executable, '-c', GLOO_EXIT_SCRIPT], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    before, during, after = map(int, out.stdout.split()[-3:])
    assert during > before  # gloo's transport loop and worker threads
    assert after == before
