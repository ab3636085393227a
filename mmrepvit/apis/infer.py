"""What ``tools/infer.py`` does: predictions and pictures for images, folders and videos,
through mmdet's ``DetInferencer`` / mmseg's ``MMSegInferencer``.

The checkpoint is read once, here, and loaded strictly (the inferencers would load it with
``strict=False``), so another model's checkpoint is an error instead of pictures of garbage;
the inferencer is built without weights and given the loaded checkpoint's class names and
palette the way it takes them from a file (``CLASSES`` / ``PALETTE`` of older checkpoints
too).
"""
import json
import os
import os.path as osp
import warnings
from typing import Dict, List, Optional

import cv2
import mmcv
import numpy as np
from mmengine.config import Config
from mmengine.utils import ProgressBar
from pycocotools import mask as mask_utils

from ..checkpoint import load_checkpoint_file, load_model_checkpoint, resolve_checkpoint_path
from ..config import load_config, toolbox_of
from ..deployment import (
    build_onnx_model,
    check_deployed_options,
    check_onnx_file,
    is_deployed_file,
)
from ..deployment.executorch_program import feed_original_images
from ..fusion import fuse_model

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm')


def list_inputs(inputs: str) -> List[str]:
    """An image, a video, or the images of a folder (sorted)."""
    if osp.isdir(inputs):
        files = sorted(osp.join(inputs, f) for f in os.listdir(inputs)
                       if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise FileNotFoundError(f'No images ({", ".join(IMAGE_EXTENSIONS)}) in folder '
                                    f'{inputs!r}')
        return files
    if not osp.isfile(inputs):
        raise FileNotFoundError(f'Input {inputs!r} does not exist (give an image, a video or a '
                                f'folder of images)')
    if not inputs.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS):
        raise ValueError(f'Input {inputs!r} is neither an image ({", ".join(IMAGE_EXTENSIONS)}) '
                         f'nor a video ({", ".join(VIDEO_EXTENSIONS)})')
    return [inputs]


def build_inferencer(config: Optional[str], weights: str, device: str = 'cpu',
                     fuse: bool = False, runtime: Optional[str] = None,
                     precision: Optional[str] = None):
    """The toolbox's inferencer for ``config`` (or the config inside ``weights``), the
    checkpoint loaded strictly, the whole model fused when ``fuse``. ``weights`` may be an
    ``.onnx`` file exported from ``config`` (float32 or int8): the inferencer then runs it in
    ONNX Runtime or, with ``runtime='openvino'``, OpenVINO, in ``precision``
    (``deployment.build_onnx_model``), same pipeline, pictures and JSON; or an ExecuTorch app
    program (``.pte``) with ``runtime='executorch'``, fed the original image."""
    deployed = is_deployed_file(weights)
    check_deployed_options(weights, deployed, runtime, precision)
    if deployed:
        if not config:
            raise ValueError(f'{weights!r} is an ONNX model, which carries no config: pass the '
                             f'config it was exported from')
        check_onnx_file(weights, fuse, runtime)
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
        cfg = Config.fromstring(cfg_text, file_format='.py')
    if deployed and cfg.model.get('backbone', {}).get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None  # the PyTorch model is only a placeholder
    if runtime == 'executorch':  # an app program resizes the original image itself
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
        inferencer.model = build_onnx_model(cfg, weights, device, runtime=runtime or 'onnxruntime',
                                            precision=precision, seg_logits=False)
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
          runtime: Optional[str] = None, precision: Optional[str] = None) -> List[str]:
    """Predict every image / video frame of ``inputs``; write ``out_dir/vis/`` (pictures,
    videos) and ``out_dir/preds/<name>.json``. Returns the files written."""
    files = list_inputs(inputs)
    inferencer = build_inferencer(config, weights, device, fuse, runtime, precision)
    classes = inferencer.model.dataset_meta.get('classes', ())
    to_json = (lambda s: detections_to_json(s, classes, score_thr)) \
        if toolbox_of(inferencer.cfg) == 'mmdet' else \
        (lambda s: segmentation_to_json(s, classes))
    os.makedirs(osp.join(out_dir, 'vis'), exist_ok=True)
    os.makedirs(osp.join(out_dir, 'preds'), exist_ok=True)
    written = []
    bar = ProgressBar(len(files)) if len(files) > 1 else None
    for path in files:
        name = osp.splitext(osp.basename(path))[0]
        if path.lower().endswith(VIDEO_EXTENSIONS):
            written += _infer_video(inferencer, path, name, out_dir, to_json, score_thr)
            continue
        image = mmcv.imread(path)
        if image is None:
            raise ValueError(f'Cannot read image {path!r}')
        sample = predict(inferencer, image)
        picture = osp.join(out_dir, 'vis', f'{name}.png')
        mmcv.imwrite(mmcv.rgb2bgr(draw(inferencer, image, sample, score_thr)), picture)
        written += [picture, _write_json(out_dir, name, dict(image=path, **_wrap(to_json(
            sample))))]
        if bar is not None:
            bar.update()
    return written


def _wrap(prediction) -> dict:
    return dict(detections=prediction) if isinstance(prediction, list) else \
        dict(class_fractions=prediction)


def _write_json(out_dir: str, name: str, data: dict) -> str:
    path = osp.join(out_dir, 'preds', f'{name}.json')
    with open(path, 'w') as f:
        json.dump(data, f, indent=1)
    return path


def _infer_video(inferencer, path, name, out_dir, to_json, score_thr) -> List[str]:
    video = mmcv.VideoReader(path)
    if len(video) == 0:
        raise ValueError(f'Video {path!r} has no readable frames')
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
        frames.append(dict(frame=index, **_wrap(to_json(sample))))
        bar.update()
    writer.release()
    return [out_video, _write_json(out_dir, name, dict(video=path, frames=frames))]
