"""Version checks in the manner of mmdet's ``__init__``, with the command that fixes them."""
from importlib import metadata

from mmengine.utils import digit_version

# package -> (distribution name, minimum inclusive, maximum exclusive, what to run)
REQUIREMENTS = {
    'mmcv': ('mmcv', '2.0.0rc4', '2.2.0',
             'MMCV_WITH_OPS=1 pip install --no-build-isolation "mmcv>=2.0.0rc4,<2.2.0" '
             '(or `mim install "mmcv==2.1.0"`)'),
    'mmdet': ('mmdet', '3.0.0', '3.4.0', 'pip install "mmdet>=3.0.0,<3.4.0"'),
    'mmseg': ('mmsegmentation', '1.0.0', '1.3.0', 'pip install "mmsegmentation>=1.0.0,<1.3.0"'),
}


def installed_version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def check_versions():
    """Raise if mmcv (required), or mmdet/mmseg when present, is outside the supported range."""
    for name, (dist, low, high, fix) in REQUIREMENTS.items():
        version = installed_version(dist)
        if version is None:
            if name == 'mmcv':
                raise ImportError(f'mmrepvit needs mmcv>={low},<{high} with its compiled ops; '
                                  f'install it with: {fix}')
            continue  # mmdet / mmseg are optional: a user may have only one of them
        if not digit_version(low) <= digit_version(version) < digit_version(high):
            raise ImportError(f'{dist}=={version} is installed but mmrepvit supports '
                              f'{dist}>={low},<{high}. Install a supported version: {fix}')
