"""Fail early, and helpfully, when a config's dataset is not on disk."""
import os.path as osp

# Where each dataset type expects its files, and where users get them.
DATASET_HELP = {
    'CocoDataset': (
        'data/coco/\n'
        '  annotations/instances_train2017.json, annotations/instances_val2017.json\n'
        '  train2017/*.jpg, val2017/*.jpg',
        'https://cocodataset.org/#download (2017 Train/Val images, 2017 Train/Val annotations);'
        ' or `mim download mmdet --dataset coco2017`'),
    'ADE20KDataset': (
        'data/ade/ADEChallengeData2016/\n'
        '  images/training/*.jpg, images/validation/*.jpg\n'
        '  annotations/training/*.png, annotations/validation/*.png',
        'http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip (unzip into '
        'data/ade/); or `mim download mmsegmentation --dataset ade20k`'),
}


class DatasetNotFoundError(FileNotFoundError):
    pass


def _innermost(dataset_cfg):
    """Unwrap RepeatDataset / ClassBalancedDataset-style wrappers (ConcatDataset: each part)."""
    if 'datasets' in dataset_cfg:
        return [d for part in dataset_cfg['datasets'] for d in _innermost(part)]
    if 'dataset' in dataset_cfg:
        return _innermost(dataset_cfg['dataset'])
    return [dataset_cfg]


def _join(root, path):
    return path if not root or osp.isabs(path) else osp.join(root, path)


def required_paths(dataset_cfg):
    """The files and folders a dataset config reads: annotation file and data prefixes."""
    paths = []
    for ds in _innermost(dataset_cfg):
        root = ds.get('data_root', '') or ''
        if ds.get('ann_file'):
            paths.append((ds.get('type', '?'), _join(root, ds['ann_file'])))
        for key, prefix in (ds.get('data_prefix') or {}).items():
            if prefix:
                paths.append((ds.get('type', '?'), _join(root, prefix)))
        if not ds.get('ann_file') and not ds.get('data_prefix') and root:
            paths.append((ds.get('type', '?'), root))
    return paths


def check_dataset_paths(cfg, splits=('train', 'val', 'test')):
    """Raise DatasetNotFoundError naming the missing path, the expected layout and the source."""
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or 'dataset' not in loader:
            continue
        for ds_type, path in required_paths(loader['dataset']):
            if osp.exists(path):
                continue
            layout, source = DATASET_HELP.get(
                str(ds_type).split('.')[-1],
                ('see the dataset documentation of the toolbox', 'the dataset\'s own site'))
            raise DatasetNotFoundError(
                f'The {split} dataset ({ds_type}) expects {path!r}, which does not exist '
                f'(working directory {osp.abspath(".")}).\n'
                f'Expected layout:\n  {layout}\n'
                f'Get the data from: {source}\n'
                f'Or point the config elsewhere, e.g. --cfg-options '
                f'{split}_dataloader.dataset.data_root=/path/to/data/')
