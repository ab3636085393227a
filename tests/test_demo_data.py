import json
import os.path as osp

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mmrepvit.demo.data import CLASSES as DEMO_CLASSES
from mmrepvit.demo.data import demo_dataset_is_current, make_demo_dataset


def test_demo_dataset_is_deterministic_and_in_the_real_formats(tmp_path):
    a, b, c = (make_demo_dataset(str(tmp_path / name), num_train=6, num_val=3, seed=seed,
                                 progress=False)
               for name, seed in (('a', 0), ('b', 0), ('c', 1)))
    read = lambda path: open(path, 'rb').read()  # noqa: E731
    assert read(a['train']) == read(b['train']) and read(a['train']) != read(c['train'])
    assert read(str(tmp_path / 'a/ade/annotations/training/000002.png')) == \
        read(str(tmp_path / 'b/ade/annotations/training/000002.png'))
    assert demo_dataset_is_current(str(tmp_path / 'a'), num_train=6, num_val=3, seed=0)
    assert not demo_dataset_is_current(str(tmp_path / 'a'), num_train=6, num_val=3, seed=1)

    coco = COCO(a['train'])
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(DEMO_CLASSES)
    assert len(coco.getImgIds()) == 6
    for img_id in coco.getImgIds():
        info = coco.loadImgs(img_id)[0]
        image = cv2.imread(osp.join(tmp_path, 'a/coco/train2017', info['file_name']))
        assert image.shape == (info['height'], info['width'], 3)
        label = cv2.imread(osp.join(tmp_path, 'a/ade/annotations/training',
                                    info['file_name'].replace('.jpg', '.png')), 0)
        assert set(np.unique(label)) <= {1, 2, 3, 4, 5}  # background 1, classes 2..5
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img_id)):
            mask = mask_utils.decode(ann['segmentation'])
            x, y, w, h = ann['bbox']
            ys, xs = np.nonzero(mask)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
            assert ann['area'] == mask.sum() >= 20
            # the semantic map agrees with the instance masks
            assert (label[mask > 0] == ann['category_id'] + 1).all()
    val = json.load(open(a['val']))
    assert len(val['images']) == 3 and val['annotations']


def test_val_split_does_not_depend_on_the_number_of_train_images(tmp_path):
    """Demo variants with more training images are judged on the very same val images."""
    small, large = (make_demo_dataset(str(tmp_path / name), num_train=n, num_val=3,
                                      progress=False) for name, n in (('s', 2), ('l', 5)))
    assert open(small['val'], 'rb').read() == open(large['val'], 'rb').read()
    assert open(small['train'], 'rb').read() != open(large['train'], 'rb').read()
    for split in ('coco/val2017/000003.jpg', 'coco/train2017/000002.jpg'):
        assert (tmp_path / 's' / split).read_bytes() == (tmp_path / 'l' / split).read_bytes()
