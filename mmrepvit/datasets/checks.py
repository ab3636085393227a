"""Fail early, and helpfully, when a config's dataset is not on disk or has no annotations."""
import inspect
import json
import os
import os.path as osp
import traceback

from mmengine.dataset import BaseDataset

from ..errors import first_few

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
    """A file or folder a dataset config reads does not exist."""


def innermost_datasets(dataset):
    """The datasets inside wrappers (ConcatDataset, RepeatDataset, ...), of a dataset config
    (dict keys) or of a built dataset (attributes)."""
    get = dataset.get if isinstance(dataset, dict) else lambda k: getattr(dataset, k, None)
    if get('datasets') is not None:
        return [d for part in get('datasets') for d in innermost_datasets(part)]
    if get('dataset') is not None:
        return innermost_datasets(get('dataset'))
    return [dataset]


def _split_datasets(cfg, splits):
    """(split, innermost dataset config) of each ``{split}_dataloader`` of ``cfg``."""
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if loader and 'dataset' in loader:
            yield from ((split, ds) for ds in innermost_datasets(loader['dataset']))


def _required_paths(ds):
    """The files and folders a dataset config reads: annotation file and data prefixes."""
    root = ds.get('data_root', '') or ''
    paths = [osp.join(root, p) for p in [ds.get('ann_file')] + list(
        (ds.get('data_prefix') or {}).values()) if p]
    return paths + ([root] if root and not ds.get('ann_file') and not ds.get('data_prefix') else [])


def check_dataset_paths(cfg, splits=('train', 'val', 'test')):
    """Raise DatasetNotFoundError naming the missing path, the expected layout and the source."""
    for split, ds in _split_datasets(cfg, splits):
        for path in (p for p in _required_paths(ds) if not osp.exists(p)):
            ds_type = ds.get('type', '?')
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


class DatasetAnnotationError(ValueError):
    """The dataset's files are there, but it holds no usable annotations."""


MAX_NAMED = 5  # files named in one message


def _files_with_suffix(folder, suffix):
    """Names under ``folder`` (recursively, relative, suffix removed) ending with ``suffix``."""
    return {osp.relpath(osp.join(dirpath, name), folder)[:-len(suffix)]
            for dirpath, _, files in os.walk(folder) for name in files if name.endswith(suffix)}


def dataset_class(ds_type):
    """The mmseg dataset class registered as ``ds_type``, or None (the registry names it later)."""
    try:
        from mmseg.registry import DATASETS
        return DATASETS.get(ds_type)
    except Exception:
        return None


def _suffix(ds, key, fallback):
    """The dataset config's ``img_suffix`` / ``seg_map_suffix``, else its mmseg class's default."""
    cls = dataset_class(ds.get('type', 'BaseSegDataset'))
    param = (inspect.signature(cls.__init__).parameters if cls else {}).get(key)
    default = param.default if param is not None and isinstance(param.default, str) else fallback
    return ds.get(key, default)


def check_dataset_annotations(cfg, splits=('train', 'val', 'test')):
    """Raise DatasetAnnotationError when a folder-layout segmentation dataset (ADE20K-style, no
    ann_file) has no label maps, or images without one. COCO json: :func:`explain_empty_dataset`."""
    for split, ds in _split_datasets(cfg, splits):
        root, prefix = ds.get('data_root', '') or '', ds.get('data_prefix') or {}
        if not prefix.get('seg_map_path') or ds.get('ann_file'):
            continue
        img_dir = osp.join(root, prefix.get('img_path', '') or '')
        seg_dir = osp.join(root, prefix['seg_map_path'])
        if not (osp.isdir(img_dir) and osp.isdir(seg_dir)):
            continue  # check_dataset_paths names what is missing
        img_suffix = _suffix(ds, 'img_suffix', '.jpg')
        seg_suffix = _suffix(ds, 'seg_map_suffix', '.png')
        images = _files_with_suffix(img_dir, img_suffix)
        maps = _files_with_suffix(seg_dir, seg_suffix)
        head = f'The {split} dataset ({ds.get("type", "?")})'
        expected = (f'Expected one label map per image, with the same name: '
                    f'{img_dir}/NAME{img_suffix} -> {seg_dir}/NAME{seg_suffix} (pixel values '
                    f'are class indices)')
        if not images:
            raise DatasetAnnotationError(
                f'{head} has no images: {img_dir!r} holds no *{img_suffix} files (set '
                f'img_suffix= in the dataset config if your images use another extension)')
        if not maps:
            raise DatasetAnnotationError(
                f'{head} has no annotations: {seg_dir!r} holds no *{seg_suffix} label maps, '
                f'while {img_dir!r} holds {len(images)} *{img_suffix} images. {expected}.')
        missing = sorted(images - maps)
        if missing:
            named = first_few([repr(osp.join(seg_dir, m + seg_suffix)) for m in missing],
                              MAX_NAMED)
            raise DatasetAnnotationError(
                f'{head}: {len(missing)} of {len(images)} images have no label map: {named} '
                f'do not exist. {expected}.')


DATASET_INIT_STEPS = ('__init__', 'full_init', '_serialize_data', 'filter_data')


def _empty_dataset_in(error):
    """The mmengine dataset whose initialisation raised ``error`` with no samples, if any."""
    for frame, _ in traceback.walk_tb(error.__traceback__):
        obj = frame.f_locals.get('self')
        # while initialising only: once serialised, a dataset's data_list is emptied on purpose
        if frame.f_code.co_name in DATASET_INIT_STEPS and isinstance(obj, BaseDataset) and \
                isinstance(getattr(obj, 'data_list', None), list) and not obj.data_list:
            return obj
    return None


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_id(value):
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _ids(entries):
    return {e['id'] for e in entries if isinstance(e, dict) and _is_id(e.get('id'))}


def _entry_problems(name, entries, fields):
    """'name[i] (id N): what is wrong' for each entry of a COCO list that lacks a field or holds
    an invalid value; ``fields``: {key: (is_valid, expected)}."""
    found = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            found.append(f'{name}[{i}] is {entry!r}, not an object')
            continue
        what = f'{name}[{i}] (id {entry["id"]!r})' if 'id' in entry else f'{name}[{i}]'
        for key, (is_valid, expected) in fields.items():
            if key not in entry:
                found.append(f'{what} has no "{key}" (expected {expected})')
            elif not is_valid(entry[key]):
                found.append(f'{what}: "{key}" is {entry[key]!r} (expected {expected})')
    return found


def _malformed_coco(ann_file, coco):
    """What makes a COCO instances file unusable to mmdet, or None: its top level, entries
    without the fields mmdet reads, or that point at no image or category."""
    lists = ('images', 'annotations', 'categories')
    if not isinstance(coco, dict) or not all(isinstance(coco.get(k, []), list) for k in lists):
        return (f'{ann_file!r} is not a COCO instances file: expected an object with the lists '
                f'"images", "annotations" and "categories"')
    images, anns, categories = (coco.get(k, []) for k in lists)
    image_ids, category_ids = _ids(images), _ids(categories)
    shown = first_few(list(map(str, sorted(category_ids, key=str))), 10)
    an_id, a_number, a_string = (_is_id, 'a number'), (_is_number, 'a number'), (
        lambda v: isinstance(v, str), 'a string')
    found = _entry_problems('categories', categories, {'id': an_id, 'name': a_string})
    found += _entry_problems('images', images, {
        'id': an_id, 'file_name': a_string, 'width': a_number, 'height': a_number})
    found += _entry_problems('annotations', anns, {
        'id': an_id,
        'image_id': (lambda v: _is_id(v) and v in image_ids, 'the id of one of the "images"'),
        'category_id': (lambda v: _is_id(v) and v in category_ids,
                        f'one of the ids of the "categories": {shown}'),
        'bbox': (lambda v: isinstance(v, list) and len(v) == 4 and all(map(_is_number, v)),
                 '[x, y, width, height]: 4 numbers'),
        'area': (_is_number, 'a number, the area in pixels')})
    return (f'{ann_file!r} has {len(found)} malformed entries: '
            f'{first_few(found, MAX_NAMED, "; ")}') if found else None


def _coco_problem(dataset, ann_file, coco):
    """Why a well-formed COCO file gave no samples."""
    images, anns, categories = (coco.get(k) or [] for k in ('images', 'annotations', 'categories'))
    if not images:
        return f'{ann_file!r} lists no images (its "images" list is empty)'
    if not anns:
        return (f'{ann_file!r} has no annotations: its "annotations" list is empty (it lists '
                f'{len(images)} images). Training needs instances: "annotations" entries with '
                f'image_id, category_id, bbox (and segmentation for masks), as in COCO\'s '
                f'instances_train2017.json')
    classes = tuple((dataset.metainfo or {}).get('classes') or ())
    wanted = {c['id'] for c in categories if c.get('name') in classes}
    if classes and not any(a.get('category_id') in wanted for a in anns):
        names = [c.get('name') for c in categories]
        return (f'none of the {len(anns)} annotations of {ann_file!r} is of the config\'s '
                f'classes {classes}; the file\'s categories are {names}. Set '
                f'metainfo=dict(classes=...) to category names of the file')
    return (f'{ann_file!r} has {len(anns)} annotations on {len(images)} images, but every image '
            f'was filtered out (filter_cfg={getattr(dataset, "filter_cfg", None)}: '
            f'filter_empty_gt drops images without annotations, min_size small ones)')


def explain_empty_dataset(error):
    """A DatasetAnnotationError saying why the dataset being initialised when ``error`` was
    raised has no samples or an unusable COCO json; else None."""
    dataset = _empty_dataset_in(error)
    if dataset is None:
        return None
    ann_file = getattr(dataset, 'ann_file', '') or ''
    name = type(dataset).__name__
    if ann_file.endswith('.json') and osp.isfile(ann_file):
        try:
            with open(ann_file, 'rb') as f:
                coco = json.load(f)
        except ValueError as e:  # json.JSONDecodeError, UnicodeDecodeError: where parsing stopped
            where = (f'{e.msg} at line {e.lineno}, column {e.colno} (character {e.pos})'
                     if isinstance(e, json.JSONDecodeError) else str(e))
            broken = (f'{ann_file!r} is not valid JSON: {where}; the file has '
                      f'{osp.getsize(ann_file)} bytes. A file cut short ends like this: copy or '
                      f'download it again')
        else:
            broken = _malformed_coco(ann_file, coco)
        if broken:
            return DatasetAnnotationError(f'The dataset {name} cannot be loaded: {broken}.')
        problem = _coco_problem(dataset, ann_file, coco)
    else:
        where = ann_file or getattr(dataset, 'data_prefix', None) or dataset.data_root
        problem = f'it found no samples in {where!r}'
    return DatasetAnnotationError(f'The dataset {name} is empty: {problem}.')
