import os
from pathlib import Path

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('MMREPVIT_SHARED', REPO.parent / 'shared'))
REFERENCE = SHARED / 'reference'

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope='session')
def golden():
    path = REFERENCE / 'repvit_m0_6_official_golden.pth'
    if not path.exists():
        pytest.fail(f'golden reference missing: {path} (the shared/ folder beside the repo)')
    return torch.load(path, weights_only=True)


def randomise_bn(model, seed=0):
    """Non-trivial norm statistics and affine terms, so that fusing is actually exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model
