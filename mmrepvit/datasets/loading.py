"""File loading transforms whose errors name the file that could not be read.

mmcv's ``LoadImageFromFile`` fails on an empty file with a bare OpenCV assertion
(``!buf.empty()``), and mmseg's ``LoadAnnotations`` fails on a damaged label map with Pillow's
``cannot identify image file <_io.BytesIO ...>`` or ``Truncated File Read``: none says which of
thousands of files it was. The subclasses here behave the same and only re-raise such failures
as :class:`UnreadableFileError` with the path and what is wrong with it.
:func:`use_readable_loaders` puts them into a config's data pipelines (``tools/train.py`` and
``tools/test.py`` do), so configs keep the toolboxes' standard transform names.
"""
import os.path as osp

from mmcv.transforms import LoadImageFromFile

from ..registry import TRANSFORMS


class UnreadableFileError(OSError):
    """An image or label map of the dataset could not be read or decoded."""


def _unreadable(what, path, error):
    path = str(path)
    if not osp.exists(path):
        problem = 'the file does not exist'
    elif osp.getsize(path) == 0:
        problem = 'the file is empty (0 bytes)'
    else:
        problem = (f'it could not be decoded ({osp.getsize(path)} bytes: corrupted, truncated, '
                   f'or not an image file)')
    detail = f'{type(error).__name__}: {error}'.strip()
    return UnreadableFileError(f'Cannot read {what} {path!r}: {problem}. Replace or remove the '
                               f'file (and its annotation). [{detail}]')


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile``; a file that cannot be read raises an error naming it."""

    def transform(self, results):
        try:
            return super().transform(results)
        except Exception as e:  # what decoders raise varies: cv2.error, AssertionError, OSError
            raise _unreadable('image', results.get('img_path'), e) from e


try:  # mmseg reads label maps from files; mmdet's annotations come from the json
    from mmseg.datasets.transforms import LoadAnnotations as _SegLoadAnnotations
except ImportError:  # pragma: no cover
    _SegLoadAnnotations = None

if _SegLoadAnnotations is not None:

    @TRANSFORMS.register_module()
    class CheckedLoadSegAnnotations(_SegLoadAnnotations):
        """mmseg's ``LoadAnnotations``; a label map that cannot be read raises an error
        naming it."""

        def _load_seg_map(self, results):
            try:
                return super()._load_seg_map(results)
            except Exception as e:
                raise _unreadable('segmentation label map', results.get('seg_map_path'),
                                  e) from e


def _replacements(toolbox):
    names = {'LoadImageFromFile': 'mmrepvit.CheckedLoadImageFromFile'}
    if toolbox == 'mmseg' and _SegLoadAnnotations is not None:
        names['LoadAnnotations'] = 'mmrepvit.CheckedLoadSegAnnotations'
    return names


def _rewrite(node, names):
    changed = 0
    if isinstance(node, dict):
        if node.get('type') in names:
            node['type'] = names[node['type']]
            changed += 1
        for value in node.values():
            changed += _rewrite(value, names)
    elif isinstance(node, (list, tuple)):
        for item in node:
            changed += _rewrite(item, names)
    return changed


def use_readable_loaders(cfg, toolbox):
    """Swap the standard loading transforms of every ``*_dataloader`` for the checked ones
    (in place); returns how many were swapped."""
    names = _replacements(toolbox)
    return sum(_rewrite(cfg[key], names) for key in list(cfg.keys())
               if key.endswith('_dataloader') and cfg[key])
