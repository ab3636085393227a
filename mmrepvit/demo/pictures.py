"""Pictures a person can read: a grid of val images, enlarged, the truth beside the prediction,
class names in a legible font, detections above a score threshold only, colour maps with a
legend. Drawn with OpenCV at the enlarged size, so text stays sharp however small the images."""
import importlib
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import mmcv
import numpy as np
import torch
from mmengine.dataset import pseudo_collate
from pycocotools import mask as mask_utils

from ..checkpoint import load_model_checkpoint
from ..config import build_model, load_config, toolbox_of

FONT = cv2.FONT_HERSHEY_SIMPLEX
IGNORE_COLOUR = (128, 128, 128)
Colour = Tuple[int, int, int]


def put_label(img: np.ndarray, text: str, x: int, y: int, colour: Colour,
              font_scale: float = 0.55) -> None:
    """``text`` on a filled box of ``colour`` whose top-left corner is (x, y), kept inside."""
    (w, h), base = cv2.getTextSize(text, FONT, font_scale, 1)
    x = int(min(max(x, 0), img.shape[1] - w - 4))
    y = int(min(max(y, 0), img.shape[0] - h - base - 4))
    cv2.rectangle(img, (x, y), (x + w + 4, y + h + base + 4), colour, -1)
    light = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] > 140
    cv2.putText(img, text, (x + 2, y + h + 2), FONT, font_scale,
                (0, 0, 0) if light else (255, 255, 255), 1, cv2.LINE_AA)


def enlarge(img: np.ndarray, scale: int, interpolation=cv2.INTER_CUBIC) -> np.ndarray:
    return cv2.resize(img, (img.shape[1] * scale, img.shape[0] * scale),
                      interpolation=interpolation)


def draw_instances(rgb: np.ndarray, scale: int, boxes: np.ndarray, labels: np.ndarray,
                   classes: Sequence[str], palette: Sequence[Colour],
                   masks: Optional[np.ndarray] = None,
                   scores: Optional[np.ndarray] = None) -> np.ndarray:
    """Enlarged ``rgb`` with masks (half transparent), boxes and "name score" labels in the
    colour of each class. Boxes are in the coordinates of ``rgb``."""
    out = enlarge(rgb, scale).astype(np.float32)
    if masks is not None:
        for mask, label in zip(masks, labels):
            big = enlarge(mask.astype(np.uint8), scale, cv2.INTER_NEAREST) > 0
            out[big] = 0.5 * out[big] + 0.5 * np.array(palette[label], np.float32)
    out = out.clip(0, 255).astype(np.uint8)
    for i, label in enumerate(labels):
        colour = tuple(int(c) for c in palette[label])
        x1, y1, x2, y2 = (np.asarray(boxes[i], np.float64) * scale).round().astype(int)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        text = classes[label] if scores is None else f'{classes[label]} {scores[i]:.2f}'
        put_label(out, text, x1, y1 - 22 if y1 >= 22 else y1 + 2, colour)
    return out


def colour_map(seg: np.ndarray, palette: Sequence[Colour], scale: int,
               ignore_index: int = 255) -> np.ndarray:
    """Class ids -> enlarged RGB map; ``ignore_index`` (and unknown ids) grey."""
    lut = np.tile(np.array(IGNORE_COLOUR, np.uint8), (256, 1))
    lut[:len(palette)] = np.asarray(palette, np.uint8)
    lut[ignore_index] = IGNORE_COLOUR
    return enlarge(lut[seg.astype(np.uint8)], scale, cv2.INTER_NEAREST)


def caption(text: str, width: int, height: int = 34) -> np.ndarray:
    bar = np.full((height, width, 3), 255, np.uint8)
    (w, h), _ = cv2.getTextSize(text, FONT, 0.7, 2)
    cv2.putText(bar, text, ((width - w) // 2, (height + h) // 2), FONT, 0.7, (0, 0, 0), 2,
                cv2.LINE_AA)
    return bar


def legend(classes: Sequence[str], palette: Sequence[Colour], width: int) -> np.ndarray:
    """Colour swatches with class names, wrapped onto as many rows as ``width`` needs."""
    placed, x, row = [], 10, 0
    for name, colour in zip(classes, palette):
        need = 30 + cv2.getTextSize(name, FONT, 0.7, 2)[0][0] + 24
        if x + need > width and x > 10:  # a new row, unless this one is still empty
            x, row = 10, row + 1
        placed.append((name, tuple(int(c) for c in colour), x, 8 + 36 * row))
        x += need
    bar = np.full((36 * (row + 1) + 6, width, 3), 255, np.uint8)
    for name, colour, x, y in placed:
        cv2.rectangle(bar, (x, y), (x + 24, y + 24), colour, -1)
        cv2.rectangle(bar, (x, y), (x + 24, y + 24), (0, 0, 0), 1)
        cv2.putText(bar, name, (x + 30, y + 20), FONT, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
    return bar


def _side_by_side(panels: Sequence[np.ndarray], gap: int) -> np.ndarray:
    white = np.full((panels[0].shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([p for panel in panels for p in (panel, white)][:-1], axis=1)


def grid(rows: List[List[np.ndarray]], titles: Sequence[str], footer: Optional[np.ndarray] = None,
         gap: int = 6) -> np.ndarray:
    """Panels of equal size in rows, with column titles above and ``footer`` below."""
    parts = [_side_by_side([caption(t, rows[0][0].shape[1]) for t in titles], gap)]
    for row in rows:
        line = _side_by_side(row, gap)
        parts += [line, np.full((gap, line.shape[1], 3), 255, np.uint8)]
    return np.concatenate(parts + ([] if footer is None else [footer]), axis=0)


def decode_mask(mask, shape: Tuple[int, int]) -> np.ndarray:
    """A COCO mask as mmdet's datasets keep it (polygons, or RLE with str / bytes / list
    counts) -> (H, W) uint8."""
    if isinstance(mask, dict) and isinstance(mask.get('counts'), (str, bytes)):
        counts = mask['counts']
        return mask_utils.decode(dict(mask, counts=counts.encode() if isinstance(counts, str)
                                      else counts))
    rles = mask_utils.frPyObjects(mask, *shape)  # polygons or uncompressed RLE
    return mask_utils.decode(mask_utils.merge(rles) if isinstance(rles, list) else rles)


def detection_row(rgb, info, sample, classes, palette, scale, score_thr):
    instances = [i for i in info['instances'] if not i.get('ignore_flag', 0)]
    boxes = np.array([i['bbox'] for i in instances], np.float32).reshape(-1, 4)
    labels = np.array([i['bbox_label'] for i in instances], np.int64)
    masks = np.array([decode_mask(i['mask'], rgb.shape[:2]) for i in instances],
                     np.uint8).reshape(-1, *rgb.shape[:2])
    pred = sample.pred_instances
    keep = (pred.scores >= score_thr).cpu().numpy()
    pred_masks = pred.masks.cpu().numpy()[keep] if 'masks' in pred else None
    return [draw_instances(rgb, scale, boxes, labels, classes, palette, masks),
            draw_instances(rgb, scale, pred.bboxes.cpu().numpy()[keep],
                           pred.labels.cpu().numpy()[keep], classes, palette, pred_masks,
                           pred.scores.cpu().numpy()[keep])]


def segmentation_row(rgb, info, sample, palette, scale, reduce_zero_label):
    truth = cv2.imread(info['seg_map_path'], cv2.IMREAD_UNCHANGED).astype(np.int64)
    if reduce_zero_label:
        truth = np.where(truth == 0, 255, truth - 1)
    pred = sample.pred_sem_seg.data[0].cpu().numpy()
    return [enlarge(rgb, scale), colour_map(truth, palette, scale),
            colour_map(pred, palette, scale)]


def draw_val_grid(config: str, checkpoint: Union[str, dict], out_file: str,
                  indices: Sequence[int] = (0, 1, 2, 3, 4), scale: int = 3,
                  score_thr: float = 0.5, cfg_options: Optional[dict] = None) -> str:
    """Predict val images ``indices`` with ``checkpoint`` (strictly loaded) and write one
    picture: per image, the truth beside the prediction, ``scale`` times enlarged."""
    cfg = load_config(config, cfg_options)
    cfg.model.backbone.init_cfg = None
    model = build_model(cfg).eval()  # sets the toolbox's default scope
    load_model_checkpoint(model, checkpoint)
    scope = toolbox_of(cfg)
    dataset = importlib.import_module(f'{scope}.registry').DATASETS.build(
        cfg.test_dataloader.dataset)
    classes, palette = dataset.metainfo['classes'], dataset.metainfo['palette']
    rows = []
    for index in indices[:len(dataset)]:
        with torch.no_grad():
            sample = model.test_step(pseudo_collate([dataset[index]]))[0]
        info = dataset.get_data_info(index)
        rgb = mmcv.imread(info['img_path'], channel_order='rgb')
        if scope == 'mmdet':
            rows.append(detection_row(rgb, info, sample, classes, palette, scale, score_thr))
        else:
            rows.append(segmentation_row(rgb, info, sample, palette, scale,
                                         dataset.reduce_zero_label))
    titles = ['truth', f'prediction (score >= {score_thr:g})'] if scope == 'mmdet' else \
        ['image', 'truth', 'prediction']
    width = len(titles) * rows[0][0].shape[1] + (len(titles) - 1) * 6
    picture = grid(rows, titles, legend(classes, palette, width))
    mmcv.imwrite(mmcv.rgb2bgr(picture), out_file)  # makes its folder
    return out_file
