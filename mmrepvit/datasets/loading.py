"""Loading transforms whose errors name the file that cannot be read, or that decodes but is
wrong (a JPEG cut short, a label map with values that are no class or of another size than its
image), and the swap of a config's loaders for them (docs/reliability.md, "What bad input says").
"""
import io
import os
import os.path as osp
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio
from mmengine.dataset import BaseDataset
from PIL import Image

from ..errors import first_few
from ..registry import TRANSFORMS
from ..utils.config_tree import replace_types, walk_config
from .checks import dataset_class, innermost_datasets

IGNORE_INDEX = 255  # mmseg's label value for pixels without a class
JPEG_START, JPEG_END = b'\xff\xd8', b'\xff\xd9'
MAX_VALUES = 10  # label values named in one message


class UnreadableFileError(OSError):
    """An image or label map of the dataset could not be read or decoded."""


class LabelMapError(ValueError):
    """A segmentation label map was read, but does not fit: it holds values that are no class,
    or its size is not its image's."""


def _unreadable(what, path, error, problem=None):
    """An UnreadableFileError naming ``path`` and ``problem``, else why it failed to decode."""
    path = str(path)
    if problem is None and not osp.exists(path):
        problem = 'the file does not exist'
    elif problem is None:
        size = osp.getsize(path)
        problem = ('the file is empty (0 bytes)' if size == 0 else f'it could not be decoded '
                   f'({size} bytes: corrupted, truncated, or not an image file)')
    detail = f' [{type(error).__name__}: {error}]' if error is not None else ''
    return UnreadableFileError(f'Cannot read {what} {path!r}: {problem}. Replace or remove the '
                               f'file (and its annotation).{detail}')


def cut_short_jpeg(data: bytes) -> Optional[str]:
    """What is wrong, if ``data`` is a JPEG cut short (OpenCV decodes it with a grey bottom);
    else None. Only a JPEG without its end-of-image marker is decoded again, by Pillow, which
    tells data cut off from bytes appended after the marker."""
    if data[:2] != JPEG_START or data[-2:] == JPEG_END:
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except OSError:
        return (f'the JPEG is truncated ({len(data)} bytes, its end-of-image marker FF D9 is '
                f'missing): it decodes only partly')
    return None


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile``; a file it cannot read, or a JPEG cut short, is named."""

    def transform(self, results):
        if self.file_client_args is not None:  # mmcv's deprecated file client: its own reading
            try:
                return super().transform(results)
            except Exception as e:
                raise _unreadable('image', results.get('img_path'), e) from e
        path, data = results['img_path'], None
        try:
            data = fileio.get(path, backend_args=self.backend_args)
            img = mmcv.imfrombytes(data, flag=self.color_type, backend=self.imdecode_backend)
            assert img is not None, 'the decoder returned no image'
        except Exception as e:  # what decoders raise varies: cv2.error, AssertionError, OSError
            if self.ignore_empty:
                return None
            raise _unreadable('image', path, e, cut_short_jpeg(data) if data else None) from e
        cut_short = cut_short_jpeg(data)
        if cut_short:
            raise _unreadable('image', path, None, cut_short)
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = results['ori_shape'] = img.shape[:2]
        return results


DATA_FILE_KEYS = ('img_path', 'seg_map_path')  # the files of a sample that loaders read


def check_dataset_files(datasets):
    """Raise UnreadableFileError naming every missing or empty image and label map that the
    built datasets (``{split: dataset}``) list: one ``os.stat`` per file before training,
    rather than a failure when the file is first read, maybe hours in."""
    bad = {}  # a dict: each file once, in order
    for split, dataset in datasets.items():
        for part in innermost_datasets(dataset):
            if not isinstance(part, BaseDataset):
                continue
            part.full_init()
            infos = map(part.get_data_info, range(len(part)))
            for path in (info.get(key) for info in infos for key in DATA_FILE_KEYS):
                if not isinstance(path, str) or '://' in path:  # none, or not a local file
                    continue
                try:
                    if os.stat(path).st_size == 0:
                        bad[f'{split}: {path} (empty: 0 bytes)'] = None
                except OSError:
                    bad[f'{split}: {path} (does not exist)'] = None
    if bad:
        listed = '\n  '.join(bad)
        raise UnreadableFileError(
            f'The datasets list {len(bad)} files that cannot be read:\n  {listed}\nReplace '
            f'them, or remove them and their annotations.')


try:  # mmseg reads label maps from files; mmdet's annotations come from the json
    from mmseg.datasets.transforms import LoadAnnotations as _SegLoadAnnotations
except ImportError:  # pragma: no cover
    _SegLoadAnnotations = None

if _SegLoadAnnotations is not None:

    @TRANSFORMS.register_module()
    class CheckedLoadSegAnnotations(_SegLoadAnnotations):
        """mmseg's ``LoadAnnotations``; a label map that cannot be read, is not its image's
        size, or (given ``num_classes``) holds values other than ``0 .. num_classes - 1`` and
        ``ignore_index`` once loaded raises an error naming it."""

        def __init__(self, num_classes=None, ignore_index=IGNORE_INDEX, **kwargs):
            super().__init__(**kwargs)
            self.num_classes, self.ignore_index = num_classes, ignore_index

        def _load_seg_map(self, results):
            try:
                super()._load_seg_map(results)
            except Exception as e:
                raise _unreadable('segmentation label map', results.get('seg_map_path'),
                                  e) from e
            label, image = results['gt_seg_map'], results.get('ori_shape')
            if image is not None and tuple(label.shape[:2]) != tuple(image[:2]):
                raise LabelMapError(
                    f'The label map {results.get("seg_map_path")!r} is {label.shape[1]}x'
                    f'{label.shape[0]} pixels, but its image {results.get("img_path")!r} is '
                    f'{image[1]}x{image[0]}: a label map needs one class index per image '
                    f'pixel, at the image\'s size. Replace or remove the pair.')
            classes, ignore = self.num_classes, self.ignore_index
            if classes is None or label.size == 0 or label.max() < classes:
                return  # the common case: one pass over the map
            values = np.unique(label[(label >= classes) & (label != ignore)])
            if values.size:
                raise LabelMapError(self._values_message(results, values))

        def _values_message(self, results, values):
            classes, ignore = self.num_classes, self.ignore_index
            valid = f'0..{classes - 1} (the {classes} classes) and {ignore} (ignored)'
            if results.get('label_map'):
                held = 'holds, after the dataset\'s label_map, class indices'
            else:
                held = 'holds pixel values'
                if self.reduce_zero_label:  # loaded = file value - 1; file 0 -> ignored
                    values = values.astype(np.int64) + 1
                    valid = (f'1..{classes} (the {classes} classes: reduce_zero_label=True '
                             f'subtracts 1), 0 and {ignore} (ignored)')
            shown = first_few(list(map(str, values.tolist())), MAX_VALUES)
            return (f'The label map {results.get("seg_map_path")!r} {held} {shown}, '
                    f'which are no class of the dataset: valid are {valid}. Fix the map, or '
                    f'the classes of the config (dataset metainfo / decode_head.num_classes).')


def _set_label_range(loader_cfg, model_cfg):
    """Give each checked label-map loader its dataset's number of classes (metainfo classes,
    else its class's ``METAINFO``, else ``decode_head.num_classes``) and ignore index."""
    head = (model_cfg or {}).get('decode_head')
    head = head if isinstance(head, dict) else {}
    for ds in innermost_datasets(loader_cfg.get('dataset') or {}):
        steps = [s for _, s in walk_config(ds.get('pipeline') or [])  # TestTimeAug's too
                 if s.get('type') == 'mmrepvit.CheckedLoadSegAnnotations']
        classes = (ds.get('metainfo') or {}).get('classes')
        if steps and classes is None:
            classes = (getattr(dataset_class(ds.get('type')), 'METAINFO', None)
                       or {}).get('classes')
        for step in steps:
            step.setdefault('num_classes',
                            len(classes) if classes is not None else head.get('num_classes'))
            step.setdefault('ignore_index', head.get('ignore_index', IGNORE_INDEX))


def use_readable_loaders(cfg, toolbox):
    """Swap the standard loading transforms of every ``*_dataloader`` for the checked ones
    (in place), the label-map loader told its dataset's number of classes; returns how many
    were swapped."""
    names = {'LoadImageFromFile': 'mmrepvit.CheckedLoadImageFromFile'}
    if toolbox == 'mmseg' and _SegLoadAnnotations is not None:
        names['LoadAnnotations'] = 'mmrepvit.CheckedLoadSegAnnotations'
    swapped = 0
    for key in list(cfg.keys()):
        if key.endswith('_dataloader') and cfg[key]:
            swapped += replace_types(cfg[key], names)
            _set_label_range(cfg[key], cfg.get('model'))
    return swapped
