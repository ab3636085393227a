"""Mask R-CNN as an ExecuTorch app program (``MaskRCNNApp``): the uint8 RGB image [H, W, 3]
in, as ``DenseDetectorApp`` takes it, mmdet's test-time Mask R-CNN inside, in fixed-size
tensor arithmetic alone (no torchvision or mmcv operator, no data-dependent shape):

- RPN: per FPN level the best ``rpn.nms_pre`` anchors, decoded and clipped; boxes of
  ``min_bbox_size`` or less dropped; NMS per level at ``rpn.nms.iou_threshold``
  (``greedy_nms``); the best ``rpn.max_per_img`` kept, always that many rows (the rest
  padding, never scored);
- RoIAlign for the box and the mask head (``roi_features``): mmdet's ``SingleRoIExtractor``
  level of each box (``finest_scale``) and mmcv's aligned average RoIAlign, its bilinear
  samples gathered from the levels' maps;
- box head: every (proposal, class) pair with that class's own box, ``score_thr``, NMS per
  class, ``max_per_img`` (``executorch_detector.select``);
- mask head on the kept boxes, each box's class channel, sigmoid, pasted into the image as
  mmdet's ``_do_paste_mask`` does (``grid_sample``'s bilinear weights, written as two small
  matrix products) and thresholded at ``mask_thr_binary``.

Outputs: ``DenseDetectorApp``'s (boxes in the image's pixels; ``nms_converged`` 1 when both
NMS are exact) and ``masks``, uint8 [max_per_img, H, W], 1 inside an instance (padding rows
all 0).

mmcv's RoIAlign with ``sampling_ratio=0`` samples each bin with ceil(bin size) points per
axis, a count that depends on the box; a program has a fixed count (``MaskRCNNApp.grids``:
ceil(2 * finest_scale / finest stride / output size), enough for boxes up to 28 feature
pixels a side, as every square box below the coarsest level is): boxes needing more are
sampled with that many points per bin and axis, evenly spread (mmcv's fixed-ratio rule).
"""
import math
from typing import Dict

import torch
import torch.nn as nn

from .executorch_detector import (
    DEFAULT_NMS_CANDIDATES,
    DEFAULT_NMS_ITERATIONS,
    DETECTOR_OUTPUTS,
    DetectorApp,
    candidates,
    check_nms,
    select,
)


def axis_samples(start, size, length, bins: int, sampling_ratio: int, grid: int):
    """mmcv's RoIAlign sample points along one axis for each box (``start``, ``size`` in
    feature pixels, ``length``: the map's length there): per box, bin and sample
    (K, bins * grid) the two neighbouring rows (or columns) and their weights, the weight 0
    for samples mmcv does not take, divided by the bin's sample count."""
    bin_size = size / bins
    count = torch.full_like(size, sampling_ratio) if sampling_ratio > 0 else bin_size.ceil()
    count = count.clamp(max=grid)[:, None, None]
    step = torch.arange(grid, dtype=size.dtype, device=size.device)
    pos = (start[:, None, None] + bin_size[:, None, None] *
           (torch.arange(bins, dtype=size.dtype, device=size.device)[None, :, None]
            + (step + 0.5) / count.clamp(min=1)))
    length = length[:, None, None]
    used = (step < count) & (pos >= -1) & (pos <= length)
    pos = pos.clamp(min=0)
    low = pos.floor()
    at_end = low >= length - 1
    low = torch.where(at_end, length - 1, low)
    frac = torch.where(at_end, 0.0, pos - low)
    scale = used.to(size.dtype) / count.clamp(min=1)
    return [(index.long().flatten(1), weight.flatten(1)) for index, weight in
            ((low, (1 - frac) * scale), (torch.where(at_end, low, low + 1), frac * scale))]


def roi_features(feats, boxes: torch.Tensor, extractor: nn.Module, grid: int) -> torch.Tensor:
    """What mmdet's ``SingleRoIExtractor`` (mmcv's average RoIAlign) gives for ``boxes``
    (K, 4) of the one image: (K, C, out_h, out_w). Each box's level (``map_roi_levels``),
    then bilinear samples gathered from the levels' maps, concatenated as one (pixels, C)
    table, and averaged per bin."""
    layer = extractor.roi_layers[0]
    (out_h, out_w), strides = layer.output_size, extractor.featmap_strides
    feats = feats[:len(strides)]
    table = torch.cat([f[0].permute(1, 2, 0).reshape(-1, f.shape[1]) for f in feats])
    scale = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()
    level = torch.floor(torch.log2(scale / extractor.finest_scale + 1e-6))
    level = level.clamp(0, len(feats) - 1).long()
    heights, widths = ([f.shape[axis] for f in feats] for axis in (2, 3))
    base = torch.tensor([0] + [h * w for h, w in zip(heights, widths)]).cumsum(0)[level]
    height, width = (boxes.new_tensor(sizes)[level] for sizes in (heights, widths))
    start = boxes / boxes.new_tensor(strides)[level, None] - (0.5 if layer.aligned else 0.0)
    size = start[:, 2:] - start[:, :2]
    if not layer.aligned:  # mmcv's legacy mode gives every box at least one pixel
        size = size.clamp(min=1)
    ys = axis_samples(start[:, 1], size[:, 1], height, out_h, layer.sampling_ratio, grid)
    xs = axis_samples(start[:, 0], size[:, 0], width, out_w, layer.sampling_ratio, grid)
    out = 0
    for row, row_weight in ys:
        for col, col_weight in xs:
            index = base[:, None, None] + row[:, :, None] * width.long()[:, None, None] + \
                col[:, None, :]
            weight = row_weight[:, :, None] * col_weight[:, None, :]
            out = out + table[index.flatten()].view(*index.shape, -1) * weight[..., None]
    out = out.view(len(boxes), out_h, grid, out_w, grid, -1).sum((2, 4))
    return out.permute(0, 3, 1, 2)


def paste_masks(probs: torch.Tensor, boxes: torch.Tensor, height: int, width: int,
                threshold: float) -> torch.Tensor:
    """mmdet's ``_do_paste_mask``: mask probabilities (N, M, M) resampled into ``boxes``
    (N, 4) of a ``height`` x ``width`` image (``grid_sample``, bilinear, zeros outside,
    align_corners=False) and thresholded (>= ``threshold``): uint8 (N, height, width)."""

    def weights(low, high, length, size):  # (N, length, size): the bilinear weights
        pixel = torch.arange(length, dtype=boxes.dtype, device=boxes.device) + 0.5
        g = (pixel - low[:, None]) / (high - low)[:, None] * 2 - 1
        g = torch.where(g.isinf(), 0.0, g)  # a box of no width: mmdet's rule
        u = ((g + 1) * size - 1) / 2
        first = u.floor()[..., None]
        frac = (u[..., None] - first)
        cells = torch.arange(size, dtype=boxes.dtype, device=boxes.device)
        return (1 - frac) * (cells == first) + frac * (cells == first + 1)

    rows = weights(boxes[:, 1], boxes[:, 3], height, probs.shape[1])
    cols = weights(boxes[:, 0], boxes[:, 2], width, probs.shape[2])
    return (rows @ probs @ cols.transpose(1, 2) >= threshold).to(torch.uint8)


class FloatFeatures(nn.Module):
    """An int8 network whose float outputs pass a ``where`` (which XNNPACK does not take):
    ExecuTorch 1.5.1's XNNPACK lowering failed (``KeyError: 'val'`` in
    ``ChannelsLastTaggedReshapePass``) when the dequantised FPN maps left a partition that
    also held the RPN head's convolutions, feeding the RoI gathers outside it."""

    def __init__(self, quantized: nn.Module):
        super().__init__()
        self.quantized = quantized

    def forward(self, x):
        return tuple(torch.where(f.isnan(), 0.0, f) for f in self.quantized(x))


class MaskRCNNApp(DetectorApp):
    """A Mask R-CNN (two-stage detector with a mask head) as an app calls it: uint8 RGB
    image [H, W, 3] -> boxes, scores, labels, num_detections, nms_converged, masks (module
    docstring). ``steps``: ``detector_image_steps`` of the config."""

    outputs = DETECTOR_OUTPUTS + ['masks']
    int8_network = FloatFeatures

    def __init__(self, detector: nn.Module, steps: Dict,
                 nms_candidates: int = DEFAULT_NMS_CANDIDATES,
                 nms_iterations: int = DEFAULT_NMS_ITERATIONS):
        roi_head = detector.roi_head
        if type(roi_head).__name__ != 'StandardRoIHead' or not roi_head.with_mask or \
                type(detector.rpn_head).__name__ != 'RPNHead':
            raise ValueError(f'{type(detector.rpn_head).__name__} + '
                             f'{type(roi_head).__name__}: the two-stage app program takes '
                             f'an RPNHead and a StandardRoIHead with a mask head (Mask R-CNN)')
        super().__init__(detector, steps, check_nms(roi_head.test_cfg), nms_candidates,
                         nms_iterations)
        self.rpn, self.roi_head = detector.rpn_head, roi_head
        self.rpn_cfg = check_nms(detector.rpn_head.test_cfg)
        self.grids = [math.ceil(2 * e.finest_scale / e.featmap_strides[0] /
                                max(e.roi_layers[0].output_size))
                      for e in (roi_head.bbox_roi_extractor, roi_head.mask_roi_extractor)]

    def forward(self, image: torch.Tensor):
        h, w = image.shape[0], image.shape[1]
        x, (net_h, net_w) = self.prepare(image)
        feats = self.network(x)
        proposals, proposed, rpn_converged = self.proposals(feats, (net_h, net_w))
        boxes, scores, labels, count, converged = self.detections(feats, proposals, proposed,
                                                                  (net_h, net_w))
        # mmdet divides by the Resize scale factor (net_w / w, net_h / h)
        scaled = boxes / boxes.new_tensor([net_w / w, net_h / h] * 2)
        masks = self.masks(feats, boxes, scaled, labels, (h, w))
        return scaled, scores, labels, count, converged & rpn_converged, masks

    def proposals(self, feats, img_shape):
        """The RPN's ``max_per_img`` proposals (boxes in the network input's pixels), which
        rows are proposals (the rest padding) and whether its NMS converged."""
        cfg = self.rpn_cfg
        boxes, scores, _ = candidates(self.rpn, cfg.nms_pre, *self.rpn(feats), img_shape)
        level = torch.arange(len(scores), device=scores.device) // cfg.nms_pre
        boxes, _, _, count, converged = select(boxes, scores, level, cfg, len(scores),
                                               self.nms_iterations)
        return boxes, torch.arange(len(boxes), device=boxes.device) < count, converged

    def detections(self, feats, proposals, proposed, img_shape):
        """The box head's detections (``select``'s outputs) for the proposals: each
        (proposal, class) pair scored by the softmax and boxed by its class's regression."""
        head = self.roi_head.bbox_head
        cls_score, bbox_pred = head(roi_features(feats, proposals,
                                                 self.roi_head.bbox_roi_extractor,
                                                 self.grids[0]))
        classes = head.num_classes
        scores = cls_score.softmax(-1)[:, :classes] * proposed[:, None]
        per_roi = 1 if head.reg_class_agnostic else classes
        boxes = head.bbox_coder.decode(proposals.repeat_interleave(per_roi, 0),
                                       bbox_pred.reshape(-1, head.bbox_coder.encode_size),
                                       max_shape=img_shape)
        boxes = boxes.view(len(proposals), per_roi, 4).expand(-1, classes, -1).reshape(-1, 4)
        labels = torch.arange(scores.numel(), device=scores.device) % classes
        return select(boxes, scores.flatten(), labels, self.cfg, self.nms_candidates,
                      self.nms_iterations)

    def masks(self, feats, boxes, scaled, labels, image_size):
        """Each detection's mask in the image (uint8, padding rows 0): the mask head on its
        box (network input pixels), its class's channel, pasted into its ``scaled`` box."""
        head = self.roi_head.mask_head
        logits = head(roi_features(feats, boxes, self.roi_head.mask_roi_extractor,
                                   self.grids[1]))
        channel = torch.zeros_like(labels) if head.class_agnostic else labels.clamp(min=0)
        probs = logits[torch.arange(len(labels), device=labels.device), channel.long()]
        masks = paste_masks(probs.sigmoid(), scaled, *image_size, self.cfg.mask_thr_binary)
        return masks * (labels >= 0).to(masks.dtype)[:, None, None]
