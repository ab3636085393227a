"""Small training runs for the reliability tests: tiny demo data, tiny configs
derived from the demo configs, and the tools run as subprocesses (one thread per process)."""
import glob
import json
import os
import os.path as osp
import signal
import socket
import subprocess
import sys
from pathlib import Path

from mmrepvit.demo import make_demo_dataset

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

SEG_CONFIG = '''
_base_ = {base!r}
custom_imports = dict(imports=['mmrepvit', 'dist_hooks'], allow_failed_imports=False)
data_root = {data_root!r}
crop_size = (64, 64)
max_iters = {max_iters}
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='m0_6', init_cfg=None),
    neck=dict(in_channels=[40, 80, 160, 320], out_channels=32),
    decode_head=dict(in_channels=[32, 32, 32, 32], channels=32))
train_pipeline = {train_pipeline}
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3),
    dict(type='PolyLR', power=0.9, eta_min=1e-6, begin=3, end=max_iters, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval={interval},
                    max_keep_ckpts=-1))
custom_hooks = [dict(type='mmrepvit.NaNGuardHook'), dict(type='DumpRankStateHook'),
                dict(type='PauseForKillHook')]
randomness = dict(seed=0, deterministic=True)
'''

DET_CONFIG = '''
_base_ = {base!r}
data_root = {data_root!r}
max_iters = 2
model = dict(backbone=dict(arch='m0_6', init_cfg=None),
             neck=dict(in_channels=[40, 80, 160, 320]))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=max_iters)]
randomness = dict(seed=0, deterministic=True)
'''


def demo_pipeline(name, changes):
    """The demo Semantic FPN config's pipeline ``name`` as config text, with ``changes``
    ({step index: {key: value}}) applied: tiny configs scale the demo's steps, not restate them."""
    from mmengine.config import Config
    steps = Config.fromfile(str(REPO / 'configs/demo/fpn_repvit_m1_1_demo.py')).to_dict()[name]
    for index, change in changes.items():
        steps[index].update(change)
    return repr(steps)


def make_data(root):
    """8 train / 5 val scenes of 64x64 in COCO and ADE20K layouts under ``root``."""
    make_demo_dataset(str(root), num_train=8, num_val=5, size=(64, 64), seed=0, progress=False)
    return Path(root)


def write_seg_config(path, data, max_iters=6, interval=2):
    """A Semantic FPN RepViT-M0.6 config on ``data/ade`` (from the demo config)."""
    text = SEG_CONFIG.format(base=str(REPO / 'configs/demo/fpn_repvit_m1_1_demo.py'),
                             data_root=str(Path(data) / 'ade'), max_iters=max_iters,
                             interval=interval, train_pipeline=demo_pipeline(
                                 'train_pipeline', {2: dict(scale=(80, 80), ratio_range=(0.8, 1.2)),
                                                    3: dict(crop_size=(64, 64))}))
    Path(path).write_text(text)
    return str(path)


def write_det_config(path, data):
    """A Mask R-CNN RepViT-M0.6 config on ``data/coco`` (from the demo config)."""
    text = DET_CONFIG.format(base=str(REPO / 'configs/demo/maskrcnn_repvit_m1_1_demo.py'),
                             data_root=str(Path(data) / 'coco') + '/')
    Path(path).write_text(text)
    return str(path)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tool_env(**extra):
    """One thread per process (2 cores, 2 ranks); the venv's python first on PATH (for the
    .sh launchers); tests/ importable for ``dist_hooks``."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
    env['PYTHONPATH'] = os.pathsep.join([str(TESTS), str(REPO), env.get('PYTHONPATH', '')])
    env.update({k: str(v) for k, v in extra.items()})
    return env


def tool_command(tool, *args, nproc=1, port=None):
    """``tools/<tool>.py args``, or with ``nproc`` > 1 its ``tools/dist_<tool>.sh`` launcher."""
    args = [str(a) for a in args]
    if nproc == 1:
        return [sys.executable, str(REPO / 'tools' / f'{tool}.py')] + args
    if tool == 'train':
        return ['bash', str(REPO / 'tools/dist_train.sh'), args[0], str(nproc)] + args[1:]
    return ['bash', str(REPO / 'tools/dist_test.sh'), args[0], args[1], str(nproc)] + args[2:]


def start_tool(tool, *args, nproc=1, log=None, **env):
    """Start a tool in its own process group (so a test can kill it and its workers)."""
    env.setdefault('PORT', free_port())
    return subprocess.Popen(tool_command(tool, *args, nproc=nproc), cwd=REPO,
                            env=tool_env(**env), stdout=log or subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def kill_group(proc, sig=signal.SIGKILL):
    """Send ``sig`` to the process group ``start_tool`` made for ``proc``; reap ``proc``."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    proc.wait()


def run_tool(tool, *args, nproc=1, timeout=240, expect_ok=True, **env):
    """Run a tool to completion and return its output; unless ``expect_ok`` is False, fail
    the test with the end of the output if the tool fails."""
    proc = start_tool(tool, *args, nproc=nproc, **env)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise
    if expect_ok:
        assert proc.returncode == 0, f'{tool} failed ({proc.returncode}):\n{out[-6000:]}'
    return out


def packaged_test(toolbox, config, checkpoint, work_dir, out):
    """The toolbox's own tools/test.py, as installed with it (``<package>/.mim/tools``);
    returns its metrics."""
    package = __import__(toolbox)
    script = osp.join(osp.dirname(package.__file__), '.mim', 'tools', 'test.py')
    result = subprocess.run([sys.executable, script, str(config), str(checkpoint), '--work-dir',
                             str(work_dir), '--out', str(out)], capture_output=True, text=True,
                            cwd=REPO, env=tool_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    logs = glob.glob(osp.join(str(work_dir), '*', '*.json'))
    scalars = json.loads(open(sorted(logs)[-1]).read().splitlines()[-1])
    return {k: v for k, v in scalars.items() if k not in ('time', 'data_time', 'step')}
