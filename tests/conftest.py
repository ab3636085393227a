import os
from pathlib import Path

import pytest
import torch

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
