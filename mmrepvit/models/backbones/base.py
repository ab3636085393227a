"""What every backbone here shares: freezing, frozen norm statistics, and in-place fusing."""
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm


def fuse_in_place(module):
    """Replace every child that knows how to ``fuse()`` itself by its fused form."""
    for name, child in module.named_children():
        if callable(getattr(child, 'fuse', None)):
            setattr(module, name, child.fuse())
        else:
            fuse_in_place(child)


class MobileBackbone(BaseModule):
    """Subclasses set ``frozen_stages``, ``norm_eval`` and ``deploy``, and say which modules
    ``frozen_stages`` covers (``frozen_modules``)."""

    def frozen_modules(self):
        raise NotImplementedError

    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        for module in self.frozen_modules():
            module.eval()
            for p in module.parameters():
                p.requires_grad = False

    def train(self, mode=True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def switch_to_deploy(self):
        """Fuse every fusable block in place (running statistics). Idempotent."""
        if self.deploy:
            return
        fuse_in_place(self)
        self.deploy = True
