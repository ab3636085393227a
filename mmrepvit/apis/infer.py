"""What ``tools/infer.py`` does: predictions and pictures for images, folders and videos,
through mmdet's ``DetInferencer`` / mmseg's ``MMSegInferencer``, the checkpoint loaded
strictly (the inferencers would load another model's with ``strict=False``)."""
import json
import os
import os.path as osp
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import cv2
import mmcv
import numpy as np
from mmengine.utils import ProgressBar
from pycocotools import mask as mask_utils

from ..checkpoint import load_checkpoint_file, load_model_checkpoint, resolve_checkpoint_path
from ..config import config_from_text, load_config, toolbox_of
from ..datasets import UnreadableFileError, cut_short_jpeg
from ..deployment import check_model_file, open_model
from ..deployment.executorch_runtime import feed_original_images
from ..deployment.runtime import runs_app_programs
from ..fusion import fuse_model

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm')


@dataclass
class InferenceRun:
    """What :func:`infer` did with each input file: the files it wrote, and the inputs it could
    not process (``failed``) or does not take (``skipped``), each with the reason."""
    written: List[str] = field(default_factory=list)
    processed: List[str] = field(default_factory=list)
    failed: Dict[str, str] = field(default_factory=dict)
    skipped: Dict[str, str] = field(default_factory=dict)

    def summary(self, out_dir: str) -> str:
        total = len(self.processed) + len(self.failed) + len(self.skipped)
        lines = [f'processed {len(self.processed)} of {total} input files; wrote '
                 f'{len(self.written)} files under {out_dir}']
        for title, reasons in (('failed', self.failed), ('skipped', self.skipped)):
            if reasons:
                lines.append(f'{title} ({len(reasons)}):')
                lines += [f'  {path}: {reason}' for path, reason in reasons.items()]
        return '\n'.join(lines)


def list_inputs(inputs: str) -> Tuple[List[str], Dict[str, str]]:
    """The images and videos to run on (an image, a video, or a folder's files, sorted), and
    the folder's other files with why they are not run on."""
    images, videos = ', '.join(IMAGE_EXTENSIONS), ', '.join(VIDEO_EXTENSIONS)
    if osp.isdir(inputs):
        files, skipped = [], {}
        for name in sorted(os.listdir(inputs)):
            path = osp.join(inputs, name)
            if not osp.isfile(path):
                skipped[path] = 'not a file (sub-folders are not searched)'
            elif name.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS):
                files.append(path)
            else:
                skipped[path] = f'not an image ({images}) or video ({videos})'
        if not files:
            raise FileNotFoundError(f'No images ({images}) or videos in folder {inputs!r}')
        return files, skipped
    if not osp.isfile(inputs):
        raise FileNotFoundError(f'Input {inputs!r} does not exist (give an image, a video or a '
                                f'folder of images)')
    if not inputs.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS):
        raise ValueError(f'Input {inputs!r} is neither an image ({images}) nor a video '
                         f'({videos})')
    return [inputs], {}


def output_names(files: List[str]) -> Dict[str, str]:
    """The name each input's outputs take (``vis/NAME.png``, ``preds/NAME.json``): its file
    name without the extension, or with it where two inputs share a stem (``a.jpg``,
    ``a.png`` -> ``a.jpg``, ``a.png``), so that no output overwrites another."""
    stems = Counter(osp.splitext(osp.basename(f))[0] for f in files)
    names = {f: osp.splitext(osp.basename(f))[0] for f in files}
    names = {f: osp.basename(f) if stems[n] > 1 else n for f, n in names.items()}
    taken = Counter(names.values())
    return {f: n if taken[n] == 1 else f'{n}_{i}' for i, (f, n) in enumerate(names.items())}


def read_image(path: str) -> np.ndarray:
    """The BGR image in ``path``; :class:`UnreadableFileError` saying what is wrong with a file
    that is not one."""
    with open(path, 'rb') as f:
        data = f.read()
    if not data:
        raise UnreadableFileError('the file is empty (0 bytes)')
    cut_short = cut_short_jpeg(data)  # OpenCV decodes one partly, or (5.x) not at all
    if cut_short:
        raise UnreadableFileError(cut_short)
    image = mmcv.imfrombytes(data)
    if image is None:
        raise UnreadableFileError(f'it could not be decoded ({len(data)} bytes: corrupted, '
                                  f'truncated, or not an image file)')
    return image


def open_video(path: str) -> mmcv.VideoReader:
    try:
        video = mmcv.VideoReader(path)
    except AssertionError:  # mmcv asserts that OpenCV opened it
        raise UnreadableFileError('OpenCV cannot open it as a video (corrupted, or a codec '
                                  'OpenCV lacks)') from None
    if len(video) == 0:
        raise UnreadableFileError('the video has no readable frames')
    return video


def build_inferencer(config: Optional[str], weights: str, device: str = 'cpu',
                     fuse: bool = False, runtime: Optional[str] = None,
                     precision: Optional[str] = None, trust_checkpoint_config: bool = False):
    """The toolbox's inferencer for ``config`` (or the config inside ``weights``, read as data
    unless ``trust_checkpoint_config``), the checkpoint loaded strictly, the whole model fused
    when ``fuse``; an exported model (``.onnx``, ``.xml``, ``.pte``) of ``config`` runs in
    ``runtime`` and ``precision`` (``deployment.open_model``) with the same pipeline."""
    deployed = check_model_file(weights, runtime, precision, fuse)
    if deployed:
        if not config:
            raise ValueError(f'{weights!r} is an exported model, which carries no config: '
                             f'pass the config it was exported from')
        checkpoint = None
    else:
        weights = resolve_checkpoint_path(weights)  # a URL: downloaded once, then the cache
        checkpoint = load_checkpoint_file(weights)  # read once: config, then the strict check
    if config:
        cfg = load_config(config)
    else:
        meta = checkpoint.get('meta') or {}
        cfg_text = meta.get('cfg')
        if not cfg_text:
            old = ' (it carries an mmdet 2 / mmseg 0 config, which these toolboxes cannot ' \
                'read: pass this project\'s config of the same model)' \
                if meta.get('config') else ''
            raise ValueError(f'Checkpoint {weights!r} carries no config (meta["cfg"]){old}: '
                             f'pass the config file too')
        cfg = config_from_text(
            cfg_text, f'The config in checkpoint {weights!r} (meta["cfg"])',
            'Pass the config file it was trained with instead, or, if you trust the file, '
            '--trust-checkpoint-config to run its config as Python.',
            trust=trust_checkpoint_config)
    if deployed and cfg.model.get('backbone', {}).get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None  # the PyTorch model is only a placeholder
    if runs_app_programs(runtime):  # an app program resizes the original image itself
        feed_original_images(cfg)
    with warnings.catch_warnings():  # built without weights on purpose: they follow
        warnings.filterwarnings('ignore', message='(Checkpoint is not loaded|weights is None)')
        if toolbox_of(cfg) == 'mmdet':
            from mmdet.apis import DetInferencer
            inferencer = DetInferencer(model=cfg, weights=None, device=device,
                                       show_progress=False)
        else:
            from mmseg.apis import MMSegInferencer
            inferencer = MMSegInferencer(model=cfg, weights=None, device=device)
            inferencer.show_progress = False  # one bar over all inputs is ours
    if deployed:
        inferencer.model = open_model(cfg, weights, runtime, precision, device=device,
                                      seg_logits=False)
    else:
        load_model_checkpoint(inferencer.model, checkpoint, source=f'checkpoint {weights!r}')
        # class names and palette as the toolbox takes them from a checkpoint (the weights
        # are set again from memory, already checked)
        inferencer._load_weights_to_model(inferencer.model, checkpoint, inferencer.cfg)
    inferencer.visualizer.dataset_meta = inferencer.model.dataset_meta
    if fuse:
        fuse_model(inferencer.model)
    if toolbox_of(cfg) == 'mmseg':  # unless told, its visualizer uses Cityscapes' classes
        meta = inferencer.model.dataset_meta
        inferencer.visualizer.set_dataset_meta(meta['classes'], meta.get('palette'))
    inferencer.model.eval()
    return inferencer


def predict(inferencer, image: np.ndarray):
    """One BGR image -> its data sample."""
    out = inferencer(image, return_datasamples=True)
    out = out['predictions'] if isinstance(out, dict) else out
    return out[0] if isinstance(out, list) else out


def detections_to_json(sample, classes, score_thr: float) -> List[dict]:
    pred = sample.pred_instances
    keep = pred.scores >= score_thr
    out = []
    for i in keep.nonzero().flatten().tolist():
        label = int(pred.labels[i])
        item = dict(label=label, class_name=classes[label] if label < len(classes) else None,
                    score=round(float(pred.scores[i]), 5),
                    bbox=[round(float(v), 2) for v in pred.bboxes[i]])
        if 'masks' in pred:
            rle = mask_utils.encode(np.asfortranarray(pred.masks[i].cpu().numpy().astype(
                np.uint8)))
            item['mask_rle'] = dict(size=rle['size'], counts=rle['counts'].decode())
        out.append(item)
    return out


def segmentation_to_json(sample, classes) -> Dict[str, float]:
    seg = sample.pred_sem_seg.data[0].cpu().numpy()
    ids, counts = np.unique(seg, return_counts=True)
    return {str(classes[i] if i < len(classes) else int(i)): round(c / seg.size, 5)
            for i, c in zip(ids.tolist(), counts.tolist())}


def draw(inferencer, image: np.ndarray, sample, score_thr: float) -> np.ndarray:
    """RGB picture: detections (boxes, masks, class names, scores >= ``score_thr``) on the
    image, or the image beside its colour map with class names."""
    visualizer = inferencer.visualizer
    rgb = mmcv.bgr2rgb(image)
    if 'pred_instances' in sample:
        visualizer.add_datasample('prediction', rgb, sample, draw_gt=False, show=False,
                                  pred_score_thr=score_thr)
        return visualizer.get_image()
    alpha = visualizer.alpha
    visualizer.alpha = 1.0  # the colour map alone, labelled
    try:
        visualizer.add_datasample('prediction', rgb, sample, draw_gt=False, show=False,
                                  with_labels=True)
        colour_map = visualizer.get_image()
    finally:
        visualizer.alpha = alpha
    return np.concatenate([rgb, colour_map], axis=1)


def infer(inputs: str, config: Optional[str], weights: str, out_dir: str = 'outputs',
          device: str = 'cpu', score_thr: float = 0.3, fuse: bool = False,
          runtime: Optional[str] = None, precision: Optional[str] = None,
          trust_checkpoint_config: bool = False) -> InferenceRun:
    """Predict every image / video frame of ``inputs``; write ``out_dir/vis/`` (pictures,
    videos) and ``out_dir/preds/<name>.json``. An input that cannot be read, or a folder's file
    that is neither image nor video, is reported in the returned :class:`InferenceRun`."""
    files, skipped = list_inputs(inputs)
    inferencer = build_inferencer(config, weights, device, fuse, runtime, precision,
                                  trust_checkpoint_config)
    classes = inferencer.model.dataset_meta.get('classes', ())
    if toolbox_of(inferencer.cfg) == 'mmdet':
        def to_json(sample):
            return dict(detections=detections_to_json(sample, classes, score_thr))
    else:
        def to_json(sample):
            return dict(class_fractions=segmentation_to_json(sample, classes))
    os.makedirs(osp.join(out_dir, 'vis'), exist_ok=True)
    os.makedirs(osp.join(out_dir, 'preds'), exist_ok=True)
    run = InferenceRun(skipped=skipped)
    bar = ProgressBar(len(files)) if len(files) > 1 else None
    for path, name in output_names(files).items():
        video = path.lower().endswith(VIDEO_EXTENSIONS)
        try:  # a file that cannot be read is reported; a model or runtime error stops the run
            source = open_video(path) if video else read_image(path)
        except OSError as e:
            run.failed[path] = str(e)
        else:
            if video:
                run.written += _infer_video(inferencer, source, path, name, out_dir, to_json,
                                            score_thr)
            else:
                sample = predict(inferencer, source)
                picture = osp.join(out_dir, 'vis', f'{name}.png')
                mmcv.imwrite(mmcv.rgb2bgr(draw(inferencer, source, sample, score_thr)), picture)
                run.written += [picture, _write_json(out_dir, name,
                                                     dict(image=path, **to_json(sample)))]
            run.processed.append(path)
        if bar is not None:
            bar.update()
    return run


def _write_json(out_dir: str, name: str, data: dict) -> str:
    path = osp.join(out_dir, 'preds', f'{name}.json')
    with open(path, 'w') as f:
        json.dump(data, f, indent=1)
    return path


def _infer_video(inferencer, video, path, name, out_dir, to_json, score_thr) -> List[str]:
    out_video = osp.join(out_dir, 'vis', f'{name}.mp4')
    writer, frames = None, []
    bar = ProgressBar(len(video))
    for index, frame in enumerate(video):
        sample = predict(inferencer, frame)
        picture = mmcv.rgb2bgr(draw(inferencer, frame, sample, score_thr))
        if writer is None:
            h, w = picture.shape[:2]
            writer = cv2.VideoWriter(out_video, cv2.VideoWriter_fourcc(*'mp4v'), video.fps,
                                     (w, h))
        writer.write(picture)
        frames.append(dict(frame=index, **to_json(sample)))
        bar.update()
    writer.release()
    return [out_video, _write_json(out_dir, name, dict(video=path, frames=frames))]
