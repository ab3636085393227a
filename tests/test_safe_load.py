"""weights_only loading: mmengine Runner checkpoints resume, anything else is refused."""
import contextlib
import glob
import os
import pickle
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import REPO
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner import load_checkpoint as mmengine_load_checkpoint
from torch.utils.data import Dataset

from mmrepvit.apis.train import read_resumed_config_as_data
from mmrepvit.checkpoint import (
    ALLOWED_GLOBAL_NAMES,
    UnsafeCheckpointError,
    load_backbone_checkpoint,
    load_checkpoint_file,
)
from mmrepvit.config import ConfigTextError, config_from_text, load_config
from mmrepvit.models import RepViT

CALLS = []
DATA = Path(__file__).resolve().parent / 'data'
NUMPY_MAJOR = np.lib.NumpyVersion(np.__version__).major


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.bn = nn.BatchNorm1d(1)

    def forward(self, inputs, labels, mode='tensor'):
        out = self.bn(self.linear(inputs)).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((out - labels)**2).mean())
        return out


class ToyData(Dataset):

    def __len__(self):
        return 16

    def __getitem__(self, i):
        return dict(inputs=torch.tensor([i / 16.0, 1.0]), labels=torch.tensor(i / 8.0))


def toy_runner(work_dir, max_iters, name, **kwargs):
    return Runner(
        model=ToyModel(), work_dir=str(work_dir), experiment_name=name,
        train_dataloader=dict(dataset=ToyData(), batch_size=4,
                              sampler=dict(type='DefaultSampler', shuffle=True),
                              collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        param_scheduler=[dict(type='LinearLR', start_factor=0.5, by_epoch=False, end=2),
                         dict(type='MultiStepLR', milestones=[3], by_epoch=False)],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
        randomness=dict(seed=0), **kwargs)


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory):
    """A checkpoint written by a real mmengine Runner: meta, state_dict, message_hub,
    optimizer, param_schedulers."""
    work_dir = tmp_path_factory.mktemp('toy_run')
    toy_runner(work_dir, 4, 'safe_load_first_run').train()
    return work_dir / 'iter_4.pth'


def _record_call(*args):
    CALLS.append(args)


class Payload:
    """An arbitrary class: unpickling it may run whatever its module does."""

    def __init__(self, note='hello'):
        self.note = note


class CodePayload:
    """Pickles as a call to ``_record_call``: what a malicious checkpoint would do."""

    def __reduce__(self):
        return _record_call, ('ran while loading', )


class SneakyGetattr:
    """Pickles as ``getattr(HistoryBuffer, 'update')``, not one of its statistics methods."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, 'update')


@contextlib.contextmanager
def no_user_safe_globals():
    """torch's default allow-list only, for the duration (ours is restored afterwards)."""
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        yield
    finally:
        torch.serialization.add_safe_globals(saved)


def test_allow_list_is_exactly_what_a_runner_checkpoint_needs(runner_checkpoint):
    checkpoint = load_checkpoint_file(runner_checkpoint)
    assert {'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers'} <= \
        set(checkpoint)
    with no_user_safe_globals():
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(str(runner_checkpoint))
    # the rest: numpy's multiarray functions as the other numpy major version names them
    other_numpy = 'numpy.core.' if NUMPY_MAJOR >= 2 else 'numpy._core.'
    assert set(needed) == {n for n in ALLOWED_GLOBAL_NAMES if not n.startswith(other_numpy)}


def test_without_the_allow_list_weights_only_fails(runner_checkpoint):
    with no_user_safe_globals(), pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(runner_checkpoint, weights_only=True)
    assert torch.load(runner_checkpoint, weights_only=True)['meta']['iter'] == 4


def test_runner_resumes_with_weights_only(runner_checkpoint, tmp_path, monkeypatch):
    load_calls = []
    torch_load = torch.load

    def recording_load(*args, **kwargs):
        load_calls.append(kwargs.get('weights_only'))
        return torch_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', recording_load)
    runner = toy_runner(tmp_path, 6, 'safe_load_resumed', load_from=str(runner_checkpoint),
                        resume=True)
    runner.train()
    assert load_calls and all(w in (None, True) for w in load_calls)  # torch's default: True
    assert runner.iter == 6
    # 4 losses restored from the checkpoint's message hub, 2 logged since
    assert len(runner.message_hub.get_scalar('train/loss').data[0]) == 6
    assert [s._global_step for s in runner.param_schedulers] == [6, 6]  # restored at 4


def test_mmengine_load_checkpoint_and_ours_read_it(runner_checkpoint):
    model = ToyModel()
    mmengine_load_checkpoint(model, str(runner_checkpoint), strict=True)
    checkpoint = load_checkpoint_file(runner_checkpoint)
    for key, value in model.state_dict().items():
        assert torch.equal(value, checkpoint['state_dict'][key])
    history = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(history, HistoryBuffer) and history.statistics('mean') > 0


@pytest.mark.parametrize('zip_format', [True, False], ids=['zip', 'legacy_format'])
@pytest.mark.parametrize('payload,offending', [
    (Payload(), 'test_safe_load.Payload'),
    (CodePayload(), 'test_safe_load._record_call'),
], ids=['class', 'reduce'])
def test_checkpoint_pickling_other_globals_is_refused(payload, offending, zip_format,
                                                      tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(2)}, 'meta': {'extra': payload}}, path,
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_file(path)
    message = str(info.value)
    assert f"Refusing to load '{path}': it pickles {offending}" in message
    assert 'code that runs while the file is loaded' in message
    with pytest.raises(pickle.UnpicklingError, match=offending.split('.')[-1]):
        mmengine_load_checkpoint(ToyModel(), str(path))  # mmengine's own torch.load refuses
    with pytest.raises(UnsafeCheckpointError):
        load_backbone_checkpoint(RepViT('m0_6'), path)
    assert CALLS == []  # nothing ran


class ShellPayload:
    """Pickles as ``os.system(command)``: torch refuses it as a global of a blocked module, in
    other words than other globals."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command, )


@pytest.mark.parametrize('zip_format', [True, False], ids=['zip', 'legacy_format'])
def test_shell_command_payload_is_refused_as_unsafe_naming_the_global(zip_format, tmp_path):
    path, marker = tmp_path / 'evil.pth', tmp_path / 'pwned'
    torch.save({'state_dict': {'w': torch.zeros(2)}, 'meta': {'x': ShellPayload(
        f'touch {marker}')}}, path, _use_new_zipfile_serialization=zip_format)
    for load in (load_checkpoint_file, lambda p: mmengine_load_checkpoint(ToyModel(), str(p))):
        with pytest.raises(UnsafeCheckpointError) as info:
            load(path)
        assert f"Refusing to load '{path}': it pickles posix.system" in str(info.value)
        assert isinstance(info.value, pickle.UnpicklingError)  # what torch's refusal is
    assert not marker.exists()


def test_getattr_only_reaches_history_buffer_statistics(tmp_path):
    path = tmp_path / 'getattr.pth'
    torch.save({'meta': {'method': SneakyGetattr()}}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"refused getattr\(.*HistoryBuffer.*'update'"):
        load_checkpoint_file(path)
    ok = tmp_path / 'statistics.pth'
    torch.save({'meta': {'buffer': HistoryBuffer([1.0, 3.0], [1, 1])}}, ok)
    assert load_checkpoint_file(ok)['meta']['buffer'].statistics('max') == 3.0


def test_object_arrays_are_refused_numeric_ones_allowed(tmp_path):
    numeric = tmp_path / 'numeric.pth'
    torch.save({'meta': {'score': np.float32(0.5), 'counts': np.arange(3)}}, numeric)
    meta = load_checkpoint_file(numeric)['meta']
    assert meta['score'] == np.float32(0.5) and meta['counts'].tolist() == [0, 1, 2]
    objects = tmp_path / 'objects.pth'
    torch.save({'meta': {'anything': np.array([1, 'two'], dtype=object)}}, objects)
    with pytest.raises(UnsafeCheckpointError, match='ObjectDType'):
        load_checkpoint_file(objects)


def numpy_boundary_checkpoint():
    """What an mmengine checkpoint carries, numpy-wise, with fixed values: the message hub
    (HistoryBuffers of float64 arrays, numpy scalars in runtime_info), numpy scalars and arrays
    of several dtypes, dtype objects and numpy's legacy RNG state in meta, a state_dict.
    ``python tests/test_safe_load.py`` saves it as tests/data/numpy<major>_checkpoint.pth."""
    hub = MessageHub('numpy_boundary_checkpoint')
    for loss in (0.5, 0.25, 0.125):
        hub.update_scalar('train/loss', loss)
    hub.update_info('best_score', np.float64(0.75))
    meta = dict(iter=400, seed=0, metric=np.float64(61.25), score=np.float32(0.5),
                count=np.int64(7), flags=np.array([True, False]),
                table=np.arange(6, dtype=np.float32).reshape(2, 3),
                pixels=np.arange(4, dtype=np.uint8),
                dtypes=[np.dtype('float32'), np.dtype('int64'), np.dtype('uint8')],
                numpy_rng_state=np.random.RandomState(0).get_state())
    state_dict = OrderedDict(weight=torch.tensor([[0.5, -2.0]]), bias=torch.tensor([1.5]))
    return dict(meta=meta, message_hub=hub.state_dict(), state_dict=state_dict)


def assert_same(loaded, expected, where='checkpoint'):
    """Equal values of equal types, through containers, arrays and HistoryBuffers."""
    assert type(loaded) is type(expected), (where, type(loaded), type(expected))
    if isinstance(expected, dict):
        assert list(loaded) == list(expected), where
        for key in expected:
            assert_same(loaded[key], expected[key], f'{where}[{key!r}]')
    elif isinstance(expected, (list, tuple)):
        assert len(loaded) == len(expected), where
        for i, (a, b) in enumerate(zip(loaded, expected)):
            assert_same(a, b, f'{where}[{i}]')
    elif isinstance(expected, np.ndarray):
        assert loaded.dtype == expected.dtype and np.array_equal(loaded, expected), where
    elif isinstance(expected, torch.Tensor):
        assert torch.equal(loaded, expected), where
    elif isinstance(expected, HistoryBuffer):
        assert_same(loaded.data, expected.data, f'{where}.data')
        assert loaded.statistics('mean') == expected.statistics('mean'), where
    else:
        assert loaded == expected, (where, loaded, expected)


@pytest.mark.parametrize('saved_under', [1, 2], ids=['saved_with_numpy1', 'saved_with_numpy2'])
def test_checkpoints_cross_the_numpy_boundary(saved_under):
    """A checkpoint saved under numpy 1 (which names numpy.core.multiarray) loads under numpy 2
    (numpy._core.multiarray), and the other way round, through our loader and mmengine's."""
    path = DATA / f'numpy{saved_under}_checkpoint.pth'
    spelling = 'numpy.core.multiarray' if saved_under == 1 else 'numpy._core.multiarray'
    with no_user_safe_globals():
        named = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    assert {f'{spelling}._reconstruct', f'{spelling}.scalar', 'builtins.getattr'} <= set(named)
    expected = numpy_boundary_checkpoint()
    assert_same(load_checkpoint_file(path), expected)
    model = nn.Linear(2, 1)
    assert_same(mmengine_load_checkpoint(model, str(path), strict=True), expected)
    assert_same(OrderedDict(model.state_dict()), expected['state_dict'])


OPT_OUT_SCRIPT = '''
import sys
import torch
from mmengine.runner.checkpoint import CheckpointLoader

def state():
    return (sorted(map(repr, torch.serialization.get_safe_globals())),
            dict(CheckpointLoader._schemes))

before = state()
import mmrepvit
from mmrepvit.checkpoint import load_checkpoint_file, load_model_checkpoint
checkpoint = load_checkpoint_file(sys.argv[1])
assert checkpoint['meta']['iter'] == 4, checkpoint['meta']
model = torch.nn.Sequential()
model.add_module('linear', torch.nn.Linear(2, 1))
model.add_module('bn', torch.nn.BatchNorm1d(1))
load_model_checkpoint(model, sys.argv[1])
after = state()
assert after == before, (before, after)
try:
    torch.load(sys.argv[1], weights_only=True)
except Exception as e:
    print('torch alone refuses:', type(e).__name__)
'''


def test_opting_out_leaves_torch_and_mmengine_as_they_were(runner_checkpoint):
    """With MMREPVIT_PROCESS_WIDE=0, the project's own loads still read mmengine checkpoints,
    and torch's allow-list and mmengine's loaders are unchanged afterwards."""
    result = subprocess.run([sys.executable, '-c', OPT_OUT_SCRIPT, str(runner_checkpoint)],
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, MMREPVIT_PROCESS_WIDE='0'))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'torch alone refuses: UnpicklingError' in result.stdout


# -- the config a checkpoint carries (meta['cfg']) -----------------------------------------------

DEMO_FPN = os.path.join(REPO, 'configs', 'demo', 'fpn_repvit_m1_1_demo.py')
PAYLOAD = "_x = __import__('os').system('touch {marker}')"


@pytest.mark.parametrize('config', sorted(glob.glob(os.path.join(REPO, 'configs', 'demo', '*.py')))
                         + [os.path.join(REPO, 'configs', 'maskrcnn_repvit_m1_1_coco.py')],
                         ids=os.path.basename)
def test_config_dumps_are_read_as_data_the_same_as_run(config):
    """What mmengine writes as meta['cfg'] (``pretty_text``, plain or formatted by yapf) reads
    back as data to what running it gives."""
    cfg = load_config(config)
    for text in (cfg.pretty_text, Config(cfg.to_dict()).pretty_text):
        read = config_from_text(text, 'dump', 'no remedy')
        assert repr(read.to_dict()) == repr(Config.fromstring(text, '.py').to_dict())


@pytest.mark.parametrize('line,shown', [
    (PAYLOAD.format(marker='m'), "`__import__('os').system('touch m')`"),
    ('size = 2 * 80', '`2 * 80`'),
    ('model = dict(type=open("f").read())', '`open("f").read()`'),
    ("_base_ = ['x.py']", 'it'),
    ('import os', 'it'),
    ('a = dict(**{"a": 1})', '`dict(**{"a": 1})`'),
])
def test_config_text_that_is_not_data_is_refused_naming_line_and_text(line, shown):
    text = "a = dict(b=[1, -2.5, (None, True)], c={'d.e': 'f'})\n" + line + '\n'
    assert config_from_text(text.split('\n')[0], 'x', 'no remedy').a == \
        dict(b=[1, -2.5, (None, True)], c={'d.e': 'f'})
    with pytest.raises(ConfigTextError) as info:
        config_from_text(text, "The config in checkpoint 'evil.pth'", 'Do this instead.')
    message = str(info.value)
    assert message.startswith(f"The config in checkpoint 'evil.pth', line 2: `{line}`: {shown} "
                              f'is not plain data, so it is not read')
    assert message.endswith('would run whatever code it holds. Do this instead.')


def test_infer_tool_refuses_code_in_a_checkpoints_config_unless_trusted(tmp_path):
    """``tools/infer.py IMG --weights ckpt.pth`` (no config: the one in the checkpoint) with a
    checkpoint that passes the weights-only allow-list but whose meta['cfg'] holds a line of
    code: refused, naming the line, and the code never runs; run with
    ``--trust-checkpoint-config``, it does run, and the tool predicts."""
    import cv2

    from mmrepvit.config import build_model
    cfg = load_config(DEMO_FPN)
    cfg.model.backbone.init_cfg = None
    marker = tmp_path / 'pwned'
    text = cfg.pretty_text.rstrip('\n').split('\n')
    line = len(text) // 2 + 1  # between two top-level assignments
    while text[line - 1].startswith(' '):
        line += 1
    text.insert(line - 1, PAYLOAD.format(marker=marker))
    checkpoint = tmp_path / 'evil.pth'
    torch.save(dict(state_dict=build_model(cfg).state_dict(),
                    meta=dict(cfg='\n'.join(text) + '\n', dataset_meta=dict(cfg.metainfo))),
               checkpoint)
    image = tmp_path / 'scene.png'
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    args = [sys.executable, os.path.join(REPO, 'tools', 'infer.py'), str(image), '--weights',
            str(checkpoint), '--out-dir', str(tmp_path / 'out')]
    refused = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert refused.returncode != 0 and not marker.exists()
    assert (f"ConfigTextError: The config in checkpoint '{checkpoint}' (meta[\"cfg\"]), line "
            f"{line}: `{PAYLOAD.format(marker=marker)}`: `__import__('os').system") \
        in refused.stderr
    assert 'or, if you trust the file, --trust-checkpoint-config' in refused.stderr
    trusted = subprocess.run(args + ['--trust-checkpoint-config'], capture_output=True,
                             text=True, cwd=REPO, timeout=300)
    assert trusted.returncode == 0, trusted.stderr[-3000:]
    assert marker.exists() and (tmp_path / 'out' / 'preds' / 'scene.json').is_file()


def test_config_text_that_is_not_python_is_refused_naming_the_line():
    text = "a = 1\nmodel = dict(type=<class 'Net'>)\n"  # what pretty_text writes for a class
    with pytest.raises(ConfigTextError, match=r"^dump, line 2: not a config written as Python "
                       r"\(invalid syntax\): `model = dict\(type=<class 'Net'>\)`. Remedy."):
        config_from_text(text, 'dump', 'Remedy.')


def test_resume_refuses_code_in_meta_config(runner_checkpoint, tmp_path):
    """mmengine's ``Runner.resume`` runs ``meta['config']`` (the key of mmcv 1.x runners) as
    Python; with ``read_resumed_config_as_data`` (what ``mmrepvit.apis.train`` does on
    ``--resume``) it is refused, naming the line, and nothing runs."""
    checkpoint = load_checkpoint_file(runner_checkpoint)
    marker = tmp_path / 'pwned'
    checkpoint['meta']['config'] = 'gpu_ids = [0]\n' + PAYLOAD.format(marker=marker) + '\n'
    evil = tmp_path / 'evil_resume.pth'
    torch.save(checkpoint, evil)
    runner = toy_runner(tmp_path / 'guarded', 6, 'resume_guarded', load_from=str(evil),
                        resume=True)
    read_resumed_config_as_data(runner)
    with pytest.raises(ConfigTextError, match=rf"'{evil}' \(meta\[\"config\"\]\), line 2: "
                       r"`_x = __import__\('os'\)"):
        runner.train()
    assert not marker.exists()
    # mmengine alone runs it
    toy_runner(tmp_path / 'plain', 6, 'resume_plain', load_from=str(evil), resume=True).train()
    assert marker.exists()



if __name__ == '__main__':  # writes this numpy's test file (tests/data/README.md)
    torch.save(numpy_boundary_checkpoint(), DATA / f'numpy{NUMPY_MAJOR}_checkpoint.pth')
