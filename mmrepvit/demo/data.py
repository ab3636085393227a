"""A small, seeded demo dataset in the real formats, so the whole product runs without COCO or
ADE20K: COCO-style instances (RLE masks of the visible parts) and ADE20K-style label PNGs.

Scenes need real learning: four classes that differ only by shape (colours are random for
every object), textured backgrounds, occlusions and a 3x range of scales.
"""
import json
import os
import os.path as osp
from typing import Tuple

import cv2
import numpy as np
from mmengine.utils import track_iter_progress
from pycocotools import mask as mask_utils

CLASSES = ('circle', 'triangle', 'square', 'star')
SEG_CLASSES = ('background', ) + CLASSES
SEG_PALETTE = [[0, 0, 0], [220, 20, 60], [0, 128, 255], [255, 200, 0], [60, 180, 75]]
SPLITS = {'train': ('train2017', 'training'), 'val': ('val2017', 'validation')}
GENERATOR_VERSION = 3  # bump when the scenes change, so old demo data is remade
META_FILE = 'demo_meta.json'
# what `make demo` uses (and tools/make_demo_data.py by default)
NUM_TRAIN, NUM_VAL, SIZE, SEED = 300, 100, (160, 160), 0


def _texture(rng, size):
    """Background: a smooth colour field plus stripes or checks, so flat colour is no cue."""
    h, w = size
    low = rng.uniform(0, 255, (4, 4, 3)).astype(np.float32)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 20)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
    pattern = np.sin(2 * np.pi * phase) if rng.random() < 0.5 else \
        np.sign(np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / period))
    img += pattern[..., None] * rng.uniform(10, 40) * rng.choice([-1, 1], 3)
    img += rng.normal(0, 6, img.shape)
    return img


def _shape_polygon(kind, cx, cy, radius, angle):
    # corners (a circle: 48), alternating radii (a five-pointed star: outer and inner)
    n, radii = dict(circle=(48, [radius]), triangle=(3, [radius]), square=(4, [radius]),
                    star=(10, [radius, radius * 0.45]))[kind]
    t = angle + np.arange(n) * 2 * np.pi / n
    r = np.array([radii[i % len(radii)] for i in range(n)])
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1).round().astype(np.int32)


def render_scene(rng, size=(160, 160), max_objects=5, min_visible=0.4):
    """An image, per-object visible masks and labels (0-based indices into CLASSES)."""
    h, w = size
    img = _texture(rng, size)
    owner = np.full((h, w), -1, np.int32)
    areas, labels = [], []
    for idx in range(rng.integers(1, max_objects + 1)):
        kind = int(rng.integers(len(CLASSES)))
        radius = rng.uniform(0.1, 0.26) * min(h, w)
        cx, cy = rng.uniform(radius * 0.6, w - radius * 0.6), rng.uniform(radius * 0.6,
                                                                          h - radius * 0.6)
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [_shape_polygon(CLASSES[kind], cx, cy, radius,
                                           rng.uniform(0, 2 * np.pi))], 1)
        colour = rng.uniform(0, 255, 3)
        shade = 1 + 0.15 * np.tanh(_texture(rng, size)[..., :1] / 128 - 1)  # some texture
        img = np.where(mask[..., None] > 0, colour * shade, img)
        owner[mask > 0] = idx
        areas.append(mask.sum())
        labels.append(kind)
    visible = [(owner == idx).astype(np.uint8) for idx in range(len(labels))]
    kept = [i for i, vis in enumerate(visible)
            if vis.sum() >= min_visible * max(areas[i], 1) and vis.sum() >= 20]
    img = np.clip(img, 0, 255).astype(np.uint8)
    return img, [visible[i] for i in kept], [labels[i] for i in kept]


def _coco_annotation(mask, label, image_id, ann_id):
    rle = mask_utils.encode(np.asfortranarray(mask))
    x, y, bw, bh = mask_utils.toBbox(rle).tolist()
    rle['counts'] = rle['counts'].decode('ascii')
    return dict(id=ann_id, image_id=image_id, category_id=label + 1, segmentation=rle,
                area=float(mask.sum()), bbox=[x, y, bw, bh], iscrowd=0)


def demo_meta(num_train, num_val, size, seed):
    return dict(version=GENERATOR_VERSION, num_train=num_train, num_val=num_val,
                size=list(size), seed=seed)


def demo_dataset_is_current(root, num_train=NUM_TRAIN, num_val=NUM_VAL, size=SIZE, seed=SEED):
    """Whether ``root`` holds a complete demo dataset made with these settings."""
    path = osp.join(root, META_FILE)
    if not osp.exists(path):
        return False
    with open(path) as f:
        return json.load(f) == demo_meta(num_train, num_val, size, seed)


def make_demo_dataset(root: str = 'data/demo', num_train: int = NUM_TRAIN,
                      num_val: int = NUM_VAL, size: Tuple[int, int] = SIZE, seed: int = SEED,
                      progress: bool = True):
    """Write ``root/coco`` (COCO layout) and ``root/ade`` (ADE20K layout) from the same scenes.
    Deterministic in ``seed``; returns the paths of the two annotation files. ``root`` gets a
    ``demo_meta.json`` last, so an interrupted run is remade."""
    meta_path = osp.join(root, META_FILE)
    if osp.exists(meta_path):
        os.remove(meta_path)
    coco_root, ade_root = osp.join(root, 'coco'), osp.join(root, 'ade')
    os.makedirs(osp.join(coco_root, 'annotations'), exist_ok=True)
    written = {}
    for split_index, (split, count) in enumerate((('train', num_train), ('val', num_val))):
        # a generator per split: the val images do not depend on how many train images there are
        rng = np.random.default_rng([seed, split_index])
        coco_dir, ade_dir = SPLITS[split]
        image_dirs = (osp.join(coco_root, coco_dir), osp.join(ade_root, 'images', ade_dir))
        seg_dir = osp.join(ade_root, 'annotations', ade_dir)
        for folder in image_dirs + (seg_dir, ):
            os.makedirs(folder, exist_ok=True)
        images, annotations, ids = [], [], range(1, count + 1)
        for image_id in track_iter_progress(ids) if progress else ids:
            img, masks, labels = render_scene(rng, size)
            name = f'{image_id:06d}'
            for folder in image_dirs:
                cv2.imwrite(osp.join(folder, name + '.jpg'), img[..., ::-1],
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
            images.append(dict(id=image_id, file_name=name + '.jpg', height=size[0],
                               width=size[1]))
            # ADE20K convention: 0 is "other" (ignored with reduce_zero_label), so the
            # background is 1 and class k of CLASSES is k + 2
            seg = np.ones(size, np.uint8)
            for mask, label in zip(masks, labels):
                seg[mask > 0] = label + 2
                annotations.append(_coco_annotation(mask, label, image_id,
                                                    len(annotations) + 1))
            cv2.imwrite(osp.join(seg_dir, name + '.png'), seg)
        ann_file = osp.join(coco_root, 'annotations', f'instances_{coco_dir}.json')
        with open(ann_file, 'w') as f:
            json.dump(dict(images=images, annotations=annotations,
                           categories=[dict(id=i + 1, name=c) for i, c in enumerate(CLASSES)]),
                      f)
        written[split] = ann_file
    with open(meta_path, 'w') as f:
        json.dump(demo_meta(num_train, num_val, size, seed), f)
    return written
