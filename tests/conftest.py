import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('MMREPVIT_SHARED', REPO.parent / 'shared'))
REFERENCE = SHARED / 'reference'

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_addoption(parser):
    parser.addoption('--runslow', action='store_true', help='also run the slow end-to-end tests')


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: long end-to-end test, run with --runslow')


def pytest_collection_modifyitems(config, items):
    if config.getoption('--runslow'):
        return
    skip = pytest.mark.skip(reason='slow end-to-end test; run with --runslow (make test-all)')
    for item in items:
        if 'slow' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope='session')
def golden():
    path = REFERENCE / 'repvit_m0_6_official_golden.pth'
    if not path.exists():
        pytest.fail(f'golden reference missing: {path} (the shared/ folder beside the repo)')
    return torch.load(path, weights_only=True)
