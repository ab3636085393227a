"""Resuming a killed run exactly: every rank's random states in the checkpoint (mmengine
re-seeds them), and the newest complete checkpoint to resume from (docs/reliability.md)."""
import glob
import os.path as osp
import random
import re
import zipfile

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop

from ..registry import HOOKS

RNG_META_KEY = 'rng_states'


def get_random_states():
    """This process's random states, as tensors, ints and lists only (``weights_only`` safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = dict(python=[version, list(internal), gauss_next], torch=torch.get_rng_state(),
                 numpy=[kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached])
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_random_states(state):
    version, internal, gauss_next = state['python']
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Checkpoint every rank's random states; restore them when training resumes. Validation
    keeps its own copy, so training does not depend on when one ran."""
    priority = 'LOW'  # after the other hooks of an iteration, before CheckpointHook (VERY_LOW)

    def __init__(self):
        self._pending = self._outside_val = self._gathered = None

    # Only rank 0 saves (``Runner.save_checkpoint`` is master-only), so the other ranks' states
    # are gathered beforehand, in the iteration (epoch) where a CheckpointHook is about to save.
    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._gather_if_saving(runner, by_epoch=False)

    def after_train_epoch(self, runner):
        self._gather_if_saving(runner, by_epoch=True)

    def _gather_if_saving(self, runner, by_epoch):
        self._gathered = None
        if get_world_size() > 1 and any(_will_save(h, runner, by_epoch) for h in runner.hooks):
            self._gathered = all_gather_object(get_random_states())

    def before_save_checkpoint(self, runner, checkpoint):
        states = [get_random_states()] if get_world_size() == 1 else self._gathered
        if states is not None:  # None: a save not foreseen; without every rank's, store none
            checkpoint.setdefault('meta', {})[RNG_META_KEY] = states

    def after_load_checkpoint(self, runner, checkpoint):
        states = (checkpoint.get('meta') or {}).get(RNG_META_KEY)
        if not states:
            return
        if len(states) != get_world_size():
            print_log(f'The checkpoint holds random states of {len(states)} processes; this run '
                      f'has {get_world_size()}: resuming with fresh random states (the data '
                      f'order and augmentations will differ from an uninterrupted run)',
                      logger='current', level=30)
            return
        self._pending = states[get_rank()]

    def before_train(self, runner):
        if runner.iter == 0 and runner.epoch == 0:
            self._pending = None  # weights loaded with load_from, not a resume

    def before_train_epoch(self, runner):
        if self._pending is None:
            return
        loop = runner.train_loop
        # IterBasedTrainLoop replays the skipped batches (drawing random numbers), then fetches
        # the first trained one before any hook runs: restore right before that fetch
        if isinstance(loop, IterBasedTrainLoop) and hasattr(loop, 'dataloader_iterator'):
            loop.dataloader_iterator = _restore_before_fetch(loop.dataloader_iterator,
                                                             runner.iter, self._restore)
        else:
            self._restore()

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self._pending is not None:  # a loop that did not fetch through the wrapper
            self._restore()

    def _restore(self):
        if self._pending is not None:
            set_random_states(self._pending)
            self._pending = None

    def before_val(self, runner):
        self._outside_val = get_random_states()

    def after_val(self, runner):
        if self._outside_val is not None:
            set_random_states(self._outside_val)
            self._outside_val = None


def _will_save(hook, runner, by_epoch):
    """Whether ``hook``, a CheckpointHook, saves at the end of this iteration (epoch); the
    same test as its ``after_train_iter`` (``after_train_epoch``)."""
    if not isinstance(hook, CheckpointHook) or hook.by_epoch != by_epoch:
        return False
    every, is_last = (hook.every_n_epochs, hook.is_last_train_epoch) if by_epoch else (
        hook.every_n_train_iters, hook.is_last_train_iter)
    return every(runner, hook.interval, getattr(hook, 'save_begin', 0)) or (
        getattr(hook, 'save_last', True) and is_last(runner))


def _restore_before_fetch(iterator, skip, restore):
    """The items of ``iterator``; ``restore()`` is called once, before fetching item ``skip``."""
    for _ in range(skip):
        yield next(iterator)
    restore()
    yield from iterator


def _step_of(path):
    m = re.search(r'(\d+)\.pth$', osp.basename(path))
    return int(m.group(1)) if m else -1


def last_checkpoint_of(work_dir):
    """The path in ``work_dir/last_checkpoint`` (written by CheckpointHook), or None."""
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        return None
    with open(marker) as f:
        return f.read().strip() or None


def is_complete_checkpoint(path):
    """Cheap test (no unpickling) that ``path`` is a whole torch zip checkpoint."""
    if not osp.isfile(path) or osp.getsize(path) == 0:
        return False
    with open(path, 'rb') as f:
        head = f.read(2)
    return zipfile.is_zipfile(path) if head == b'PK' else True


def find_resumable_checkpoint(work_dir):
    """The checkpoint ``--resume`` (no path) continues from, or None: the one
    ``last_checkpoint`` names, else the newest complete ``iter_N.pth`` / ``epoch_N.pth``."""
    found = glob.glob(osp.join(work_dir, 'iter_*.pth')) + glob.glob(
        osp.join(work_dir, 'epoch_*.pth'))
    named = last_checkpoint_of(work_dir)
    for path in ([named] if named else []) + sorted(found, key=_step_of, reverse=True):
        if is_complete_checkpoint(path):
            return path
        print_log(f'Not resuming from {path!r}: it is missing, empty or truncated (was the run '
                  f'killed while saving it?)', logger='current', level=30)
    return None
