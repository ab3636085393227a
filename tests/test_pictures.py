"""The demo's pictures: enlarged panels, truth beside prediction, only detections above the
score threshold, colour maps with a legend."""
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from mmrepvit.demo.pictures import (
    IGNORE_COLOUR,
    colour_map,
    detection_row,
    draw_instances,
    grid,
    legend,
)

CLASSES = ('circle', 'triangle')
PALETTE = [(220, 20, 60), (0, 128, 255)]


def _grey(size=40):
    return np.full((size, size, 3), 100, np.uint8)


def test_instances_are_drawn_enlarged_in_their_class_colour():
    mask = np.zeros((1, 40, 40), np.uint8)
    mask[0, 10:30, 10:30] = 1
    out = draw_instances(_grey(), 3, np.array([[10, 10, 30, 30]]), np.array([1]), CLASSES,
                         PALETTE, mask, np.array([0.87]))
    assert out.shape == (120, 120, 3)
    # inside the mask: half image grey, half the class colour; outside: untouched grey
    assert np.allclose(out[60, 60], [50, 114, 178], atol=2)
    assert (out[110, 110] == 100).all()
    # the box outline in the class colour, on the enlarged coordinates
    assert (out[90, 60] == PALETTE[1]).all() or (out[89, 60] == PALETTE[1]).all()


def test_prediction_panel_keeps_only_detections_above_the_threshold():
    info = dict(instances=[])
    pred = InstanceData(bboxes=torch.tensor([[2., 2., 12., 12.], [22., 22., 36., 36.]]),
                        labels=torch.tensor([0, 1]), scores=torch.tensor([0.9, 0.2]),
                        masks=torch.zeros(2, 40, 40, dtype=torch.bool))
    sample = type('Sample', (), {'pred_instances': pred})()
    truth, prediction = detection_row(_grey(), info, sample, CLASSES, PALETTE, 3, 0.5)
    assert (truth == 100).all()  # no truth drawn
    changed = np.abs(prediction.astype(int) - 100).sum(-1) > 0
    assert changed[:40, :40].any()  # the 0.9 detection (box 6..36 enlarged) is drawn
    assert not changed[70:, 70:].any()  # the 0.2 one is not


def test_colour_map_and_legend():
    seg = np.array([[0, 1], [255, 7]])
    rgb = colour_map(seg, PALETTE, 2)
    assert rgb.shape == (4, 4, 3)
    assert (rgb[0, 0] == PALETTE[0]).all() and (rgb[0, 3] == PALETTE[1]).all()
    assert (rgb[3, 0] == IGNORE_COLOUR).all() and (rgb[3, 3] == IGNORE_COLOUR).all()
    wide, narrow = legend(CLASSES, PALETTE, 600), legend(CLASSES, PALETTE, 120)
    assert wide.shape[1] == 600 and narrow.shape[0] > wide.shape[0]  # wraps onto two rows
    for colour in PALETTE:
        assert (wide == colour).all(-1).sum() > 100  # a swatch of each class


def test_grid_lays_out_rows_under_column_titles():
    panels = [[_grey(30), _grey(30)], [_grey(30), _grey(30)]]
    picture = grid(panels, ['truth', 'prediction'], legend(CLASSES, PALETTE, 66))
    assert picture.shape[1] == 30 * 2 + 6
    assert picture.shape[0] > 34 + 2 * 30


def test_truth_masks_decode_from_every_coco_form():
    from pycocotools import mask as mask_utils

    from mmrepvit.demo.pictures import decode_mask
    square = np.zeros((20, 30), np.uint8)
    square[5:15, 10:20] = 1
    rle = mask_utils.encode(np.asfortranarray(square))
    polygon = [[10, 5, 19.99, 5, 19.99, 14.99, 10, 14.99]]
    for form in (rle, dict(rle, counts=rle['counts'].decode()), polygon):
        decoded = decode_mask(form, (20, 30))
        assert decoded.shape == (20, 30)
        assert (decoded == square).mean() > 0.97  # polygons rasterise their edges


def test_demo_threads_come_from_the_flag_the_environment_or_the_cpus():
    from mmrepvit.demo.run import torch_threads
    assert torch_threads(3, '1', 8) == 3
    assert torch_threads(None, '2,1', 8) == 2
    assert torch_threads(None, None, 8) == 8
    with pytest.raises(ValueError, match="OMP_NUM_THREADS='two'"):
        torch_threads(None, 'two', 8)
    with pytest.raises(ValueError, match='--threads 0'):
        torch_threads(0, None, 8)
