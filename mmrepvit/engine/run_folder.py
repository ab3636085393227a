"""Runs that share a work dir keep their own results: a run folder of their own (mmengine
names it by the second the run started), and one training run at a time (docs/reliability.md)."""
import fcntl
import itertools
import os
import os.path as osp
from contextlib import contextmanager

from mmengine.dist import broadcast_object_list, get_rank
from mmengine.runner import Runner

LOCK_NAME = '.training.lock'


def claim_run_folder(work_dir: str, timestamp: str) -> str:
    """Create and return this run's folder name under ``work_dir``: ``timestamp``, else
    ``timestamp_N`` with the smallest N not taken."""
    os.makedirs(work_dir, exist_ok=True)
    for name in itertools.chain([timestamp], (f'{timestamp}_{n}' for n in itertools.count(1))):
        try:
            os.mkdir(osp.join(work_dir, name))
            return name
        except FileExistsError:
            pass


class RunFolderRunner(Runner):
    """mmengine's ``Runner``; every run gets a log folder of its own, named by rank 0."""

    def setup_env(self, env_cfg: dict) -> None:
        super().setup_env(env_cfg)
        name = [claim_run_folder(self.work_dir, self._timestamp) if get_rank() == 0 else None]
        if self.world_size > 1:
            broadcast_object_list(name)
        self._timestamp = name[0]


class WorkDirBusyError(RuntimeError):
    """Another training run is writing checkpoints into this work dir."""


@contextmanager
def training_lock(work_dir: str):
    """Hold ``work_dir`` for one training run (an ``flock``: a killed run leaves no stale lock),
    or raise :class:`WorkDirBusyError` naming the holder. Only rank 0 takes it: take it once the
    runner is built, when ranks are known under every launcher."""
    if get_rank() != 0:
        yield
        return
    os.makedirs(work_dir, exist_ok=True)
    with open(osp.join(work_dir, LOCK_NAME), 'a+') as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or 'another process'
            raise WorkDirBusyError(
                f'Work dir {osp.abspath(work_dir)!r} is in use by another training run '
                f'({holder}): two runs would overwrite each other\'s checkpoints. Wait for it '
                f'to end, or give this run its own --work-dir.') from None
        lock.seek(0)
        lock.truncate()
        lock.write(f'pid {os.getpid()}\n')
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
