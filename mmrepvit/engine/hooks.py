"""Runner hooks."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..deploy import count_batchnorms, fuse_model
from ..registry import HOOKS


@HOOKS.register_module()
class ReparameterizeHook(Hook):
    """Fuse the model (RepViT blocks and Conv-BN pairs) once the checkpoint is loaded, before
    testing: what ``tools/test.py --fuse`` uses to evaluate the deployed form."""
    priority = 'VERY_HIGH'

    def before_test(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        model.eval()
        fuse_model(model)
        runner.logger.info(f'Re-parameterised the model for testing; '
                           f'{count_batchnorms(model)} BatchNorm layers left')


@HOOKS.register_module()
class SeparableRoIAlignHook(Hook):
    """Train and test a CPU model with ``SeparableRoIAlign`` in place of mmcv's RoIAlign: the
    same values and gradients, without mmcv's single-threaded CPU kernel (17% of a demo Mask
    R-CNN training step, docs/speed.md). A model on a GPU keeps mmcv's CUDA kernel."""
    priority = 'VERY_HIGH'

    def before_run(self, runner):
        from ..deploy import use_separable_roi_align
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if any(p.is_cuda for p in model.parameters()):
            return
        swapped = use_separable_roi_align(model)
        runner.logger.info(f'SeparableRoIAlignHook: {swapped} RoIAlign layers swapped')
