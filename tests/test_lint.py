"""``make lint`` (what CI runs before the tests) passes on the package and fails on a planted
unsorted import, with the rules written in pyproject.toml."""
import os.path as osp
import shutil
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
VENV = osp.dirname(osp.dirname(sys.executable))


def make_lint(folder):
    # -o install: the venv is this one, already installed
    return subprocess.run(['make', '-C', str(folder), '-o', 'install', 'lint', f'VENV={VENV}'],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def checkout(tmp_path):
    if not osp.exists(osp.join(VENV, 'bin', 'ruff')):
        pytest.fail(f'ruff is not installed in {VENV}: make install installs '
                    f'requirements/lint.txt')
    for name in ('Makefile', 'pyproject.toml'):
        shutil.copy(osp.join(REPO, name), tmp_path)
    shutil.copytree(osp.join(REPO, 'mmrepvit'), tmp_path / 'mmrepvit',
                    ignore=shutil.ignore_patterns('__pycache__', '.mim'))
    return tmp_path


def test_make_lint_passes_on_the_package_and_fails_on_an_unsorted_import(checkout):
    result = make_lint(checkout)
    assert result.returncode == 0, result.stdout + result.stderr
    path = checkout / 'mmrepvit' / 'fusion.py'
    text = path.read_text()
    first = text.index('\nimport ') + 1
    path.write_text(text[:first] + 'import torch.nn as nn\nimport copy\n' + text[first:])
    result = make_lint(checkout)
    assert result.returncode != 0
    assert 'I001' in result.stdout and 'fusion.py' in result.stdout
