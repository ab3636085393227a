"""The published models as data: ``model-index.yml`` imports one ``metafile.yml`` per config
folder (OpenMMLab's format, what ``mim search`` and mmengine read), every config is listed
with its recipe's metadata, the trained models the configs name are its ``Weights``, and the
hand-written tables (README "Published models", docs/usage.md "Configs") and each config's
header say exactly what the metafiles say."""
import glob
import os.path as osp
import re

import pytest
import yaml
from mmengine.config.utils import _get_cfg_metainfo

import mmrepvit
from mmrepvit.apis import load_config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE_DIR = osp.dirname(mmrepvit.__file__)
CONFIG_FOLDERS = ('repvit', 'mocovit')  # the canonical configs; configs/<name>.py are aliases
# a config's note of the original release's trained model (configs/repvit/*.py, 2nd-3rd lines)
TRAINED_MODEL = re.compile(r'^# Trained model of the original release.*\n#\s+(https://\S+\.pth)$',
                           re.M)
DATASETS = {'CocoDataset': 'COCO', 'ADE20KDataset': 'ADE20K'}


def read_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def metafile_models():
    """``{config path: model entry}`` of every metafile model-index.yml imports."""
    models = {}
    for metafile in read_yaml(osp.join(REPO, 'model-index.yml'))['Import']:
        for model in read_yaml(osp.join(REPO, metafile))['Models']:
            assert model['Config'] not in models, f'{model["Config"]} listed twice'
            models[model['Config']] = model
    return models


def published(model):
    """A model's Results as the tables write them: ``'39.8 box AP / 37.2 mask AP'``."""
    return ' / '.join(f'{value} {metric}' for result in model.get('Results', [])
                      for metric, value in result['Metrics'].items())


def table_rows(text, heading):
    """``(header cells, {config: [cells after the config]})`` of the first table under
    ``heading``."""
    lines = text.split(f'\n{heading}\n', 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('| config |'))
    table = []
    for line in lines[start:]:
        if not line.startswith('|'):
            break
        table.append([c.strip() for c in line.strip().strip('|').split('|')])
    rows = {cells[0].strip('`'): cells[1:] for cells in table[2:]}
    return table[0], rows


def test_the_index_imports_every_config_folders_metafile():
    imports = read_yaml(osp.join(REPO, 'model-index.yml'))['Import']
    assert imports == [f'configs/{folder}/metafile.yml' for folder in CONFIG_FOLDERS]
    assert sorted(glob.glob(osp.join(REPO, 'configs', '*', 'metafile.yml'))) == \
        sorted(osp.join(REPO, p) for p in imports)
    # the installed copy (mmrepvit/.mim) is the same file, its paths resolving there too
    installed = osp.join(PACKAGE_DIR, '.mim', 'model-index.yml')
    assert osp.samefile(installed, osp.join(REPO, 'model-index.yml'))
    for path in imports:
        assert osp.samefile(osp.join(PACKAGE_DIR, '.mim', path), osp.join(REPO, path))


def test_every_config_is_listed_once_with_an_existing_collection():
    models = metafile_models()
    configs = sorted(f'configs/{folder}/{osp.basename(p)}' for folder in CONFIG_FOLDERS
                     for p in glob.glob(osp.join(REPO, 'configs', folder, '*.py')))
    assert sorted(models) == configs
    for folder in CONFIG_FOLDERS:
        metafile = read_yaml(osp.join(REPO, 'configs', folder, 'metafile.yml'))
        collections = {c['Name']: c for c in metafile['Collections']}
        for model in metafile['Models']:
            assert osp.isfile(osp.join(REPO, model['Config'])), model['Config']
            assert model['Config'].startswith(f'configs/{folder}/'), model['Config']
            assert model['Name'] == osp.splitext(osp.basename(model['Config']))[0]
            assert collections[model['In Collection']]['Paper']['URL'].startswith(
                'https://arxiv.org/abs/')


def test_weights_are_the_trained_models_the_configs_name():
    named = {}
    for config in metafile_models():
        with open(osp.join(REPO, config)) as f:
            found = TRAINED_MODEL.findall(f.read())
        if found:
            named[config] = found[0]
    assert len(named) == 6  # Mask R-CNN and Semantic FPN, RepViT-M1.1 / M1.5 / M2.3
    assert {c: m['Weights'] for c, m in metafile_models().items() if 'Weights' in m} == named


def test_each_config_header_states_the_metafiles_result():
    """configs/repvit/<name>.py's first line: ``... (published: 39.8 box AP / 37.2 mask AP)``
    or ``(published: not reported)``."""
    for config, model in metafile_models().items():
        with open(osp.join(REPO, config)) as f:
            header = re.search(r'\(published: ([^)]*)\)', f.readline())
        if header or 'Results' in model:
            assert header and header.group(1) == (published(model) or 'not reported'), config


def test_metadata_is_the_configs_recipe():
    for config, model in metafile_models().items():
        cfg = load_config(osp.join(REPO, config))
        meta = model['Metadata']
        assert meta['Batch Size'] == cfg.auto_scale_lr.base_batch_size, config
        assert meta['Training Data'] == DATASETS[cfg.train_dataloader.dataset.type], config
        assert meta['Training Techniques'] == [cfg.optim_wrapper.optimizer.type], config
        if 'max_epochs' in cfg.train_cfg:
            assert meta['Epochs'] == cfg.train_cfg.max_epochs and 'Iterations' not in meta
        else:
            assert meta['Iterations'] == cfg.train_cfg.max_iters and 'Epochs' not in meta
        for result in model.get('Results', []):
            assert result['Dataset'] == meta['Training Data'], config


def test_readme_published_models_table_is_the_metafiles():
    with open(osp.join(REPO, 'README.md')) as f:
        header, rows = table_rows(f.read(), '## Published models')
    release = re.fullmatch(r'.*`(https://\S+/)\.\.\.`', header[-1]).group(1)
    got = {config: (cells[1], release + cells[2].strip('`')) for config, cells in rows.items()}
    expected = {config: (published(m), m['Weights']) for config, m in metafile_models().items()
                if 'Results' in m or 'Weights' in m}
    assert got == expected


def test_usage_configs_table_is_the_metafiles():
    with open(osp.join(REPO, 'docs', 'usage.md')) as f:
        _, rows = table_rows(f.read(), '## Configs')
    got = {config: cells[1] for config, cells in rows.items()}
    expected = {config: published(m) or 'not reported'
                for config, m in metafile_models().items() if config.startswith('configs/repvit/')}
    assert got == expected


@pytest.mark.parametrize('config', ['repvit/maskrcnn_repvit_m1_1_coco.py',
                                    'repvit/fpn_repvit_m2_3_ade20k.py'])
def test_mmengine_reads_the_installed_index(config):
    """What ``mmengine.hub.get_config('mmrepvit::<config>', pretrained=True)`` looks up: the
    package's .mim/model-index.yml and the metafiles it imports."""
    meta = _get_cfg_metainfo(PACKAGE_DIR, config)
    assert meta['Config'] == f'configs/{config}'
    assert osp.isfile(osp.join(PACKAGE_DIR, '.mim', meta['Config']))
    assert meta['Weights'] == metafile_models()[meta['Config']]['Weights']
