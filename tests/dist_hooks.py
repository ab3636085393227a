"""Test-only hooks (imported by the tiny configs of tests/tiny_runs.py through custom_imports).

``DumpRankStateHook`` writes, per rank, the model state after training and the metrics and
per-image predictions of a test run, so a test can compare ranks and runs.
``PauseForKillHook`` (only with ``MMREPVIT_TEST_PAUSE_AT=N``) stops after iteration N, touches
``MMREPVIT_TEST_PAUSE_MARKER`` and waits to be killed.
"""
import json
import os
import os.path as osp
import time

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def _json(obj, path):
    with open(path, 'w') as f:
        json.dump(obj, f, default=float)


@HOOKS.register_module(force=True)
class DumpRankStateHook(Hook):
    priority = 'LOWEST'

    def after_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        torch.save(state, osp.join(runner.work_dir, f'rank{get_rank()}_state.pth'))

    def after_val_epoch(self, runner, metrics=None):
        _json(metrics, osp.join(runner.work_dir, f'val_rank{get_rank()}.json'))

    def before_test_epoch(self, runner):
        self.predictions = {}

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        for sample in outputs:
            self.predictions[osp.basename(sample.img_path)] = [
                float(sample.seg_logits.data.double().sum()),
                int(sample.pred_sem_seg.data.sum())]

    def after_test_epoch(self, runner, metrics=None):
        _json(dict(metrics=metrics, predictions=self.predictions),
              osp.join(runner.work_dir, f'test_rank{get_rank()}.json'))


@HOOKS.register_module(force=True)
class PauseForKillHook(Hook):
    priority = 'LOWEST'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        at = os.environ.get('MMREPVIT_TEST_PAUSE_AT')
        if at and runner.iter + 1 == int(at):
            with open(os.environ['MMREPVIT_TEST_PAUSE_MARKER'], 'w') as f:
                f.write(str(runner.iter + 1))
            time.sleep(600)
