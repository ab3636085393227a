"""Runner hooks."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..cpu_fast_path import use_channels_last, use_separable_roi_align
from ..fusion import count_batchnorms, fuse_model
from ..registry import HOOKS


@HOOKS.register_module()
class FuseModelHook(Hook):
    """Fuse the model (backbone blocks and every Conv-BN pair) once the checkpoint is loaded,
    before testing: what ``tools/test.py --fuse`` uses to evaluate the fused model."""
    priority = 'VERY_HIGH'

    def before_test(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        model.eval()
        fuse_model(model)
        runner.logger.info(f'Fused the model for testing; '
                           f'{count_batchnorms(model)} BatchNorm layers left')


@HOOKS.register_module()
class CPUSpeedHook(Hook):
    """Train and test a model on CPU faster without changing what it computes (float rounding
    aside): ``SeparableRoIAlign`` in place of mmcv's single-threaded RoIAlign and, optionally,
    channels-last convolutions (docs/speed.md measures both). A model on a GPU is left as it
    is."""
    priority = 'VERY_HIGH'

    def __init__(self, separable_roi_align=True, channels_last=False):
        self.separable_roi_align = separable_roi_align
        self.channels_last = channels_last

    def before_run(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if any(p.is_cuda for p in model.parameters()):
            return
        done = []
        if self.separable_roi_align:
            use_separable_roi_align(model)
            done.append('separable RoIAlign')
        if self.channels_last:
            use_channels_last(model)
            done.append('channels-last')
        runner.logger.info(f'CPUSpeedHook: {", ".join(done) or "nothing to do"}')
