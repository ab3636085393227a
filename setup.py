"""mmrepvit: RepViT and MoCoViT backbones for MMDetection and MMSegmentation."""
import re
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
# one line run at interpreter start: lets configs name ours as mmrepvit::<folder>/<file>.py
# (_mmrepvit_config_scope.py says why and how to opt out)
SCOPE_PTH = 'mmrepvit-config-scope.pth'


class BuildWithScopeHook(build_py):
    """Also put the ``.pth`` at the top of the build, i.e. into site-packages on install."""

    def run(self):
        super().run()
        if not getattr(self, 'editable_mode', False):  # an editable install imports mmrepvit
            target = Path(self.build_lib) / SCOPE_PTH
            target.write_text('import _mmrepvit_config_scope\n')


def read_requirements(name):
    lines = (HERE / 'requirements' / name).read_text().splitlines()
    return [ln.split('#')[0].strip() for ln in lines if ln.split('#')[0].strip()]


version = re.search(r"__version__ = '([^']+)'",
                    (HERE / 'mmrepvit' / 'version.py').read_text()).group(1)

setup(
    name='mmrepvit',
    version=version,
    description='RepViT and MoCoViT backbones for MMDetection and MMSegmentation',
    long_description=(HERE / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tools', 'configs')),
    py_modules=['_mmrepvit_config_scope'],
    # the configs and the model index (model-index.yml and the metafiles it imports), installed
    # as mmdet / mmseg install theirs (<package>/.mim); .mim's entries link to the repository's
    package_data={'mmrepvit': ['.mim/model-index.yml', '.mim/configs/**/*.py',
                               '.mim/configs/**/metafile.yml']},
    cmdclass={'build_py': BuildWithScopeHook},
    python_requires='>=3.8',
    # torch is deliberately not listed: users keep the torch (and mmcv build) matching their GPU.
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'mmdet': ['mmdet>=3.0.0,<3.4.0', 'pycocotools'],
        'mmseg': ['mmsegmentation>=1.0.0,<1.3.0', 'ftfy', 'regex'],
        'all': read_requirements('optional.txt'),
        'tests': read_requirements('tests.txt'),
    },
    license='Apache-2.0',
    zip_safe=False,
)
