import subprocess
import sys

import pytest
from mmengine.registry import DefaultScope

import mmrepvit
from mmrepvit.utils import compat


@pytest.mark.parametrize('scope, registry_module', [('mmdet', 'mmdet.registry'),
                                                    ('mmseg', 'mmseg.registry')])
@pytest.mark.parametrize('type_name', ['RepViT', 'mmrepvit.RepViT'])
def test_backbone_builds_from_toolbox_scope(scope, registry_module, type_name):
    registry = __import__(registry_module, fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(dict(type=type_name, arch='m0_6', out_indices=(3, )))
    assert type(model).__name__ == 'RepViT' and model.out_channels == [320]


def test_scoped_name_builds_from_mmengine_root():
    from mmengine.registry import MODELS
    model = MODELS.build(dict(type='mmrepvit.RepViT', arch='m0_6'))
    assert model.arch_name == 'm0_6'


def test_import_without_toolboxes():
    """A user of neither mmdet nor mmseg can still import the package and build backbones."""
    code = ('import sys; sys.modules["mmdet"] = None; sys.modules["mmseg"] = None\n'
            'import mmrepvit\n'
            'from mmrepvit.registry import MODELS\n'
            'print(type(MODELS.build(dict(type="RepViT", arch="m0_6"))).__name__)\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'RepViT'


def test_version_check_names_the_fix(monkeypatch):
    versions = {'mmcv': '2.2.0', 'mmdet': '3.3.0', 'mmsegmentation': '1.2.2'}
    monkeypatch.setattr(compat, 'installed_version', versions.get)
    with pytest.raises(ImportError, match=r'mmcv==2\.2\.0 .*mmcv>=2\.0\.0rc4,<2\.2\.0'):
        compat.check_versions()
    versions.update(mmcv='2.1.0', mmsegmentation=None)  # mmseg absent: fine
    compat.check_versions()
    versions.update(mmcv=None)
    with pytest.raises(ImportError, match='MMCV_WITH_OPS=1'):
        compat.check_versions()


def test_version_attribute_is_the_installed_distribution_version():
    from importlib.metadata import version
    assert mmrepvit.__version__ == version('mmrepvit')
