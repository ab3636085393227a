"""A plain (non-editable) install, as a user's environment has it: the configs come with the
package and another project's config inherits them as ``mmrepvit::<folder>/<file>.py``."""
import os
import os.path as osp
import site
import subprocess
import sys
import textwrap

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    return result.stdout


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """A new virtual environment that sees this one's packages (the stack: torch, mmcv, mmdet,
    mmseg) but not the source checkout, with ``pip install --no-deps .`` run in it."""
    root = tmp_path_factory.mktemp('installed')
    env = root / 'env'
    run([sys.executable, '-m', 'venv', str(env)])
    python = str(env / 'bin' / 'python')
    purelib = run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'])
    with open(osp.join(purelib.strip(), 'stack.pth'), 'w') as f:  # after its own packages
        f.write('\n'.join(site.getsitepackages()) + '\n')
    run([python, '-m', 'pip', 'install', '--no-deps', '--no-build-isolation', '-q', REPO],
        env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK='1'))
    return dict(python=python, root=root, purelib=purelib.strip())


def test_package_and_its_configs_come_from_site_packages(installed):
    out = run([installed['python'], '-c', textwrap.dedent('''
        import mmrepvit
        from mmrepvit.demo.run import DEMO_CONFIGS
        from mmrepvit.apis import load_config
        print(mmrepvit.__file__)
        for path in DEMO_CONFIGS.values():
            print(path, load_config(path).model.backbone.arch)
        ''')], cwd=str(installed['root']))
    lines = out.strip().splitlines()
    assert all(line.startswith(installed['purelib']) for line in lines), out
    assert lines[1].endswith('.mim/configs/demo/maskrcnn_repvit_m1_1_demo.py m1_1')


def test_model_index_names_the_published_trained_model(installed):
    """The installed model index (.mim/model-index.yml and its metafiles) as mmengine reads
    it: ``get_config(..., pretrained=True)`` finds the config and the trained model's URL."""
    out = run([installed['python'], '-c', textwrap.dedent('''
        from mmengine.hub import get_config
        cfg = get_config('mmrepvit::repvit/fpn_repvit_m1_5_ade20k.py', pretrained=True)
        print(cfg.filename)
        print(cfg.model_path)
        ''')], cwd=str(installed['root']))
    filename, url = out.strip().splitlines()[-2:]
    assert filename.startswith(installed['purelib'])
    assert filename.endswith('.mim/configs/repvit/fpn_repvit_m1_5_ade20k.py')
    assert url == 'https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m1_5_ade20k.pth'


def test_config_inheriting_mmrepvit_trains_through_mmseg_tools(installed, demo_run):
    """The user's config names only ``mmrepvit::``; mmseg's own tools/train.py parses it
    before any custom_imports run (the .pth installed with the package makes that work)."""
    config = installed['root'] / 'my_fpn.py'
    ade = osp.join(demo_run['data_root'], 'ade') + '/'
    config.write_text(textwrap.dedent(f'''
        _base_ = 'mmrepvit::demo/fpn_repvit_m1_1_demo.py'
        model = dict(backbone=dict(arch='m0_9'), neck=dict(in_channels=[48, 96, 192, 384]))
        train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                                dataset=dict(data_root={ade!r}))
        val_dataloader = dict(dataset=dict(data_root={ade!r}))
        test_dataloader = dict(dataset=dict(data_root={ade!r}))
        train_cfg = dict(max_iters=1, val_interval=100)
        default_hooks = dict(checkpoint=dict(interval=1), logger=dict(interval=1))
        '''))
    import mmseg
    train = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'train.py')
    work_dir = installed['root'] / 'work'
    out = run([installed['python'], train, str(config), '--work-dir', str(work_dir)],
              cwd=str(installed['root']))
    assert (work_dir / 'iter_1.pth').is_file(), out
    log = ''.join(p.read_text() for p in work_dir.rglob('*.log'))
    assert 'Iter(train) [1/1]' in log and "arch='m0_9'" in log
