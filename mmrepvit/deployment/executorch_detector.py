"""ExecuTorch app programs for detectors, "image in, detections out": a uint8 RGB [H, W, 3]
image of one aspect ratio, resized inside to the one size the network takes, mmdet's
test-time post-processing (NMS included) in fixed-size tensor arithmetic. ``detector_app``
picks ``DenseDetectorApp`` (RetinaNet-like) or ``MaskRCNNApp``; docs/deployment.md,
"Detectors on the device", describes inputs, outputs and limits."""
import math
from typing import Dict, Iterable, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.structures import InstanceData

from ..fusion import fuse_model
from ..model_variants import load_target_config
from ..models.layers.roi_align import axis_weights, tent
from .compare import BOX_TOL, SCORE_TOL, compare_detections
from .executorch_program import (
    SegmentorApp,
    app_contract,
    check_precision,
    check_size_range,
    export_module,
    network_graph,
    observed_module,
    quantized,
    resize_image,
    synthetic_image,
    val_images,
    write_program,
)
from .executorch_runtime import (
    ExecuTorchSessions,
    cut_padding,
    detector_image_steps,
    fits_contract,
    keep_ratio_size,
    require_executorch,
)
from .export import load_model

DETECTOR_OUTPUTS = ['boxes', 'scores', 'labels', 'num_detections', 'nms_converged']
# the best (anchor, class) pairs over all levels that enter NMS, and the unrolled iterations
# of its fixed point (ExecuTorch 1.5.1 rejects torch.while_loop; docs/deployment.md)
DEFAULT_NMS_CANDIDATES = 1000
DEFAULT_NMS_ITERATIONS = 12


def greedy_nms(boxes: torch.Tensor, valid: torch.Tensor, iou_threshold: float,
               iterations: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Greedy NMS of ``boxes`` [M, 4] sorted best first (``valid`` [M] bool: candidates):
    which are kept, and whether the result is exact. Iterates ``keep = valid & no kept i < j
    overlaps j`` (mmcv's rule's one fixed point) from ``keep = valid``: exact if the last of
    ``iterations`` steps changed nothing."""
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    inter = ((torch.minimum(x2[:, None], x2) - torch.maximum(x1[:, None], x1)).clamp(min=0) *
             (torch.minimum(y2[:, None], y2) - torch.maximum(y1[:, None], y1)).clamp(min=0))
    # 0 where the union is 0 (two empty boxes), as mmcv's 0 / 0 compares false
    iou = inter / (area[:, None] + area - inter).clamp(min=1e-12)
    # [i, j] 1.0 where i (before j) overlaps j: float arithmetic, not a slow bool conversion
    over = (iou - iou_threshold).clamp(0, 1).ceil().triu(1)
    allowed = valid.to(boxes.dtype)[None]
    keep = previous = allowed
    for _ in range(iterations):
        previous = keep
        keep = allowed * (keep @ over < 0.5)
    return keep[0] > 0.5, (keep == previous).all()


class Method(nn.Module):
    """``owner``'s method ``name`` as a module of one tensor in, which int8 quantises apart:
    the network (``extract_feat``; with the dense head in one graph XNNPACK failed to load the
    program) or a dense head on one FPN map (``forward_single``, traced for every level)."""

    def __init__(self, owner: nn.Module, name: str):
        super().__init__()
        self.owner, self.method = owner, name

    def forward(self, x):
        return getattr(self.owner, self.method)(x)


class DetectorApp(nn.Module):
    """What detector app programs share: the test pipeline's resize, normalisation and
    padding (``prepare``), the network, the dense head per level (``per_level``), the final
    NMS's settings and int8 (``quantize``). ``outputs``: the names of ``forward``'s outputs."""

    prepare = SegmentorApp.prepare
    outputs = DETECTOR_OUTPUTS
    # what int8 quantises, each module apart: attribute -> traced with symbolic sizes (float32
    # heads left the int8 Mask R-CNN program slower than fused PyTorch: docs/deployment.md)
    int8_parts = dict(network=False, per_level=True)
    int8_network = None  # what wraps the network once it is int8 (``MaskRCNNApp``'s)

    def __init__(self, detector: nn.Module, steps: Dict, cfg, nms_candidates: int,
                 nms_iterations: int):
        super().__init__()
        if nms_candidates < cfg.max_per_img:
            raise ValueError(f'nms_candidates={nms_candidates} is below max_per_img='
                             f'{cfg.max_per_img}')
        self.network = Method(detector, 'extract_feat')
        self.cfg, self.steps = cfg, steps
        self.nms_candidates, self.nms_iterations = nms_candidates, nms_iterations
        self.register_buffer('mean', torch.tensor(steps['mean']).view(1, 3, 1, 1))
        self.register_buffer('std', torch.tensor(steps['std']).view(1, 3, 1, 1))

    def dense_outputs(self, feats):
        """The dense head on every FPN map: class scores and box deltas, a list each."""
        return tuple(list(parts) for parts in zip(*[self.per_level(f) for f in feats]))

    def quantize(self, images: Sequence[torch.Tensor]) -> None:
        """Quantise the ``int8_parts`` to int8 in place, each calibrated on what it takes
        while this (float) app runs ``images`` (uint8 RGB HWC): traced on the first image's,
        observed on all."""
        if not images:
            raise ValueError('int8 calibration needs at least one image')
        examples = {}
        hooks = [getattr(self, name).register_forward_pre_hook(
            lambda module, args, name=name: examples.setdefault(name, args[0]))
            for name in self.int8_parts]
        try:
            with torch.no_grad():
                self(images[0])
        finally:
            for hook in hooks:
                hook.remove()
        for name, dynamic in self.int8_parts.items():
            setattr(self, name, observed_module(getattr(self, name), examples[name], dynamic))
        with torch.no_grad():
            for image in images:
                self(image)
        for name in self.int8_parts:
            setattr(self, name, quantized(getattr(self, name)))
        if self.int8_network is not None:
            self.network = self.int8_network(self.network)


class DenseDetectorApp(DetectorApp):
    """A RetinaNet-like detector as an app calls it: uint8 RGB image [H, W, 3] -> boxes,
    scores, labels, num_detections, nms_converged. ``steps``: ``detector_image_steps``."""

    def __init__(self, detector: nn.Module, steps: Dict,
                 nms_candidates: int = DEFAULT_NMS_CANDIDATES,
                 nms_iterations: int = DEFAULT_NMS_ITERATIONS):
        head = detector.bbox_head
        if type(head).__name__ not in ('RetinaHead', 'AnchorHead') or \
                not head.use_sigmoid_cls:
            raise ValueError(f'{type(head).__name__}: the detector app program takes dense '
                             f'anchor heads scored by a sigmoid (RetinaHead)')
        super().__init__(detector, steps, check_nms(head.test_cfg), nms_candidates,
                         nms_iterations)
        self.head, self.per_level = head, Method(head, 'forward_single')

    def forward(self, image: torch.Tensor):
        h, w = image.shape[0], image.shape[1]
        x, (net_h, net_w) = self.prepare(image)
        cls_scores, bbox_preds = self.dense_outputs(self.network(x))
        boxes, scores, labels = (torch.cat(parts) for parts in zip(*candidates(
            self.head, self.cfg.nms_pre, cls_scores, bbox_preds, (net_h, net_w))))
        boxes = boxes / resize_factor(boxes, (h, w), (net_h, net_w))
        return select(boxes, scores, labels, self.cfg, self.nms_candidates,
                      self.nms_iterations)


def resize_factor(like: torch.Tensor, size, net_size) -> torch.Tensor:
    """mmdet's Resize scale factor (net_w / w, net_h / h), twice, as a tensor like ``like``
    (boxes are divided by it to reach the image's pixels), from sizes that may be symbols of
    a dynamic export: a tensor made of them, not a Python float, which would fix them."""
    (h, w), (net_h, net_w) = size, net_size
    original = torch.stack([torch.scalar_tensor(w), torch.scalar_tensor(h)]).to(like.dtype)
    return (like.new_tensor([net_w, net_h]) / original).repeat(2)


def check_nms(cfg):
    """``cfg`` (a head's test_cfg), or a ValueError unless its NMS is plain NMS."""
    if cfg.nms.get('type', 'nms') != 'nms':
        raise ValueError(f'test_cfg.nms={dict(cfg.nms)}: the app program runs plain NMS '
                         f'(type="nms")')
    return cfg


def candidates(head: nn.Module, nms_pre: int, cls_scores, bbox_preds, img_shape) -> list:
    """Per level (a list) the best ``nms_pre`` (anchor, class) pairs of a sigmoid anchor head
    (boxes decoded and clipped to ``img_shape``, scores, classes), best first; all of a
    level's pairs where it has fewer (mmdet's rule)."""
    classes = head.cls_out_channels
    priors = head.prior_generator.grid_priors([c.shape[-2:] for c in cls_scores],
                                              dtype=cls_scores[0].dtype,
                                              device=cls_scores[0].device)
    boxes, scores, labels = [], [], []
    for cls, reg, prior in zip(cls_scores, bbox_preds, priors):
        pair_scores = cls[0].permute(1, 2, 0).reshape(-1).sigmoid()
        top, index = pair_scores.topk(min(nms_pre, len(pair_scores)))
        anchor = index // classes
        deltas = reg[0].permute(1, 2, 0).reshape(-1, head.bbox_coder.encode_size)
        boxes.append(head.bbox_coder.decode(prior[anchor], deltas[anchor], max_shape=img_shape))
        scores.append(top)
        labels.append(index % classes)
    return list(zip(boxes, scores, labels))


def valid_pairs(boxes, scores, cfg):
    """Which candidates pass mmdet's score threshold (``cfg.score_thr``, 0 without) and
    minimum box size (``cfg.min_bbox_size``)."""
    valid = scores > cfg.get('score_thr', 0.0)
    if cfg.get('min_bbox_size', -1) >= 0:
        valid = valid & ((boxes[:, 2:] - boxes[:, :2]) > cfg.min_bbox_size).all(-1)
    return valid


def select(boxes, scores, labels, cfg, nms_candidates: int, nms_iterations: int):
    """mmdet's score threshold (``cfg.score_thr``, 0 without), minimum box size, NMS per
    class (label) and ``max_per_img`` over candidates, as fixed-size outputs: boxes, scores,
    labels (int32), their count and whether NMS converged."""
    scores, order = scores.topk(min(nms_candidates, scores.shape[0]))
    boxes, labels = boxes[order], labels[order]
    valid = valid_pairs(boxes, scores, cfg)
    # mmcv's batched_nms: boxes of class c shifted by c * (largest coordinate + 1)
    largest = torch.where(valid[:, None], boxes, boxes.new_zeros(())).max()
    shifted = boxes + (labels.to(boxes.dtype) * (largest + 1))[:, None]
    keep, converged = greedy_nms(shifted, valid, cfg.nms.iou_threshold, nms_iterations)
    count = keep.shape[0]
    rank = torch.where(keep, count - torch.arange(count, device=keep.device), 0)
    _, picked = rank.topk(cfg.max_per_img)
    kept = keep[picked]
    boxes = torch.where(kept[:, None], boxes[picked], boxes.new_zeros(()))
    scores = torch.where(kept, scores[picked], scores.new_zeros(()))
    labels = torch.where(kept, labels[picked], labels.new_full((), -1)).to(torch.int32)
    count = kept.sum().to(torch.int32).reshape(1)
    return boxes, scores, labels, count, converged.to(torch.int32).reshape(1)


def export_detector_program(config: str, path: str, checkpoint: Optional[str] = None,
                            precision: str = 'f32', calib_images: int = 32,
                            export_size: Tuple[int, int] = (800, 1216),
                            cfg_options: Optional[dict] = None, model: Optional[nn.Module] = None,
                            calibration: Optional[Iterable[torch.Tensor]] = None,
                            nms_candidates: int = DEFAULT_NMS_CANDIDATES,
                            nms_iterations: int = DEFAULT_NMS_ITERATIONS,
                            fixed: bool = False, min_size: Optional[int] = None,
                            max_size: Optional[int] = None) -> Dict:
    """Write the app program of the RetinaNet-like or Mask R-CNN detector of ``config``
    (``detector_app``) to ``path`` in ``precision``, for images that the test pipeline's
    keep-ratio resize makes what it makes ``export_size`` (height, width): one aspect ratio,
    each side from ``min_size`` to ``max_size`` (default: half ``export_size``'s to it), or
    with ``fixed`` ``export_size`` alone. Returns its contract and ``checks``
    (``compare_programs`` at ``export_size`` and another size it takes; int8 against the
    float32 model). ``model``: this detector (fused here) instead of one built from
    ``checkpoint``. int8: calibrated on ``calib_images`` val images, or on ``calibration``
    (uint8 RGB HWC images)."""
    require_executorch()
    cfg = load_target_config(config, cfg_options)
    if fixed:
        low, high = list(export_size), list(export_size)
    else:
        low = [-(-side // 2) if min_size is None else min_size for side in export_size]
        high = [side if max_size is None else max_size for side in export_size]
        check_size_range(low, high, export_size)
    model = load_model(config, checkpoint, cfg_options) if model is None else \
        fuse_model(model.eval())
    steps = detector_image_steps(cfg)
    resized = keep_ratio_size(*export_size, *steps['resizes'][0][1:])
    # the program resizes to that one size: the network and what follows have fixed shapes
    app = detector_app(model, dict(steps, resizes=[('fixed', *resized)]), nms_candidates,
                       nms_iterations)
    reference = detector_app(model, steps, nms_candidates, nms_iterations)
    example = torch.zeros(*export_size, 3, dtype=torch.uint8)
    if check_precision(precision) == 'int8':
        calibration = val_images(cfg, calib_images) if calibration is None else calibration
        app.quantize([resize_image(image, export_size) for image in calibration])
    else:
        app.network = network_graph(app.network, app.prepare(example)[0])
    exported = export_module(app, example, {0: ('height', low[0], high[0]),
                                            1: ('width', low[1], high[1])})
    contract = write_program(path, exported, kind='detector', min_size=low, max_size=high,
                             resized_size=list(resized), output_names=list(app.outputs),
                             max_detections=app.cfg.max_per_img,
                             nms_candidates=nms_candidates, nms_iterations=nms_iterations,
                             **app_contract(config, cfg, model, precision, steps))
    sizes = [export_size] + same_resize_sizes(contract, export_size)
    return dict(path=path, contract=contract,
                checks=compare_programs(path, model, reference,
                                        [synthetic_image(size, seed)
                                         for seed, size in enumerate(sizes)]))


def same_resize_sizes(contract: Dict, size: Sequence[int]) -> list:
    """A size other than ``size`` that the program of ``contract`` takes (the same
    keep-ratio resize, within its size range), in a list; none: an empty list."""
    for num, den in ((2, 1), (1, 2), (3, 2), (2, 3), (4, 3), (3, 4)):
        other = tuple(-(-side * num // den) for side in size)
        if fits_contract(contract, other):
            return [other]
    return []


def roi_features(feats, boxes: torch.Tensor, extractor: nn.Module, grid: int) -> torch.Tensor:
    """What mmdet's ``SingleRoIExtractor`` (mmcv's average RoIAlign) gives for ``boxes``
    (K, 4) of the one image: (K, C, out_h, out_w), as each box's window of its level's map
    gathered from one (pixels, C) table, then ``Wy @ window @ Wx^T`` (``axis_weights``)."""
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
    window = max(out_h, out_w) * grid + 2
    wy, rows = axis_weights(start[:, 1], size[:, 1], height, out_h, layer.sampling_ratio,
                            grid, window)
    wx, cols = axis_weights(start[:, 0], size[:, 0], width, out_w, layer.sampling_ratio,
                            grid, window)
    index = base[:, None, None] + rows[:, :, None] * width.long()[:, None, None] + \
        cols[:, None, :]
    count = len(boxes)
    crops = table[index.flatten()].view(count, window, -1)  # (K, rows, cols * C)
    rows_done = torch.bmm(wy, crops).view(count * out_h, window, -1)  # (K out_h, cols, C)
    wx = wx[:, None].expand(-1, out_h, -1, -1).reshape(count * out_h, out_w, window)
    out = torch.bmm(wx, rows_done).view(count, out_h, out_w, -1)
    return out.permute(0, 3, 1, 2)  # (K, C, out_h, out_w)


def paste_masks(probs: torch.Tensor, boxes: torch.Tensor, height: int, width: int,
                threshold: float) -> torch.Tensor:
    """mmdet's ``_do_paste_mask``: mask probabilities (N, M, M) resampled into ``boxes``
    (N, 4) of a ``height`` x ``width`` image (``grid_sample``'s bilinear weights) and
    thresholded: the comparison's own bool output (a type conversion would be slow)."""

    def weights(low, high, length, size):  # (N, length, size): the bilinear weights
        pixel = torch.arange(length, dtype=boxes.dtype, device=boxes.device) + 0.5
        g = (pixel - low[:, None]) / (high - low)[:, None] * 2 - 1
        g = torch.where(g.isinf(), 0.0, g)  # a box of no width: mmdet's rule
        u = ((g + 1) * size - 1) / 2
        return tent(u[..., None] - torch.arange(size, dtype=boxes.dtype, device=boxes.device))

    rows = weights(boxes[:, 1], boxes[:, 3], height, probs.shape[1])
    cols = weights(boxes[:, 0], boxes[:, 2], width, probs.shape[2])
    return rows @ probs @ cols.transpose(1, 2) >= threshold


class FloatFeatures(nn.Module):
    """An int8 network whose float outputs pass a ``where`` (which XNNPACK does not take):
    without it ExecuTorch 1.5.1's lowering failed (``KeyError: 'val'`` in
    ``ChannelsLastTaggedReshapePass``)."""

    def __init__(self, quantized: nn.Module):
        super().__init__()
        self.quantized = quantized

    def forward(self, x):
        return tuple(torch.where(f.isnan(), 0.0, f) for f in self.quantized(x))


class MaskRCNNApp(DetectorApp):
    """A Mask R-CNN as an app calls it: uint8 RGB image [H, W, 3] -> ``DenseDetectorApp``'s
    outputs and ``masks``. ``steps``: ``detector_image_steps`` of the config."""

    outputs = DETECTOR_OUTPUTS + ['masks']
    int8_network = FloatFeatures
    int8_parts = dict(DetectorApp.int8_parts, box_head=False, mask_head=False)

    def __init__(self, detector: nn.Module, steps: Dict,
                 nms_candidates: int = DEFAULT_NMS_CANDIDATES,
                 nms_iterations: int = DEFAULT_NMS_ITERATIONS):
        roi_head = detector.roi_head
        if type(roi_head).__name__ != 'StandardRoIHead' or not roi_head.with_mask or \
                type(detector.rpn_head).__name__ != 'RPNHead':
            raise ValueError(f'{type(detector.rpn_head).__name__} + '
                             f'{type(roi_head).__name__}: the two-stage app program takes '
                             f'an RPNHead and a StandardRoIHead with a mask head (Mask R-CNN)')
        if not roi_head.test_cfg.mask_thr_binary > 0:
            raise ValueError(f'test_cfg.rcnn.mask_thr_binary='
                             f'{roi_head.test_cfg.mask_thr_binary}: the app program gives '
                             f'binary masks, thresholded at a value above 0')
        super().__init__(detector, steps, check_nms(roi_head.test_cfg), nms_candidates,
                         nms_iterations)
        self.rpn, self.roi_head = detector.rpn_head, roi_head
        self.per_level = Method(detector.rpn_head, 'forward_single')
        # the RoI heads as modules of their own (int8 replaces these, not the detector's)
        self.box_head, self.mask_head = roi_head.bbox_head, roi_head.mask_head
        self.rpn_cfg = check_nms(detector.rpn_head.test_cfg)
        # RoIAlign's samples per bin and axis: mmcv's count (sampling_ratio=0) depends on the
        # box, a program's is fixed, exact for boxes up to 28 feature pixels a side (docs)
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
        scaled = boxes / resize_factor(boxes, (h, w), (net_h, net_w))
        masks = self.masks(feats, boxes, scaled, labels, (h, w))
        return scaled, scores, labels, count, converged & rpn_converged, masks

    def proposals(self, feats, img_shape):
        """The RPN's ``max_per_img`` proposals (boxes in the network input's pixels), which
        rows are proposals (the rest padding) and whether its NMS converged: NMS per level
        (mmdet's ``batched_nms`` by level), then the best kept over all levels."""
        cfg = self.rpn_cfg
        levels = candidates(self.rpn, cfg.nms_pre, *self.dense_outputs(feats), img_shape)
        nms = [greedy_nms(boxes, valid_pairs(boxes, scores, cfg), cfg.nms.iou_threshold,
                          self.nms_iterations) for boxes, scores, _ in levels]
        boxes, scores, _ = (torch.cat(parts) for parts in zip(*levels))
        keep = torch.cat([kept for kept, _ in nms])
        _, picked = torch.where(keep, scores, -1.0).topk(min(cfg.max_per_img, len(scores)))
        return boxes[picked], keep[picked], torch.stack([done for _, done in nms]).all()

    def detections(self, feats, proposals, proposed, img_shape):
        """The box head's detections (``select``'s outputs) for the proposals: each
        (proposal, class) pair scored by the softmax and boxed by its class's regression."""
        head = self.roi_head.bbox_head
        cls_score, bbox_pred = self.box_head(roi_features(feats, proposals,
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
        """Each detection's mask in the image (bool, padding rows false): the mask head on its
        box (network input pixels), its class's channel, pasted into its ``scaled`` box."""
        head = self.roi_head.mask_head
        logits = self.mask_head(roi_features(feats, boxes, self.roi_head.mask_roi_extractor,
                                             self.grids[1]))
        channel = torch.zeros_like(labels) if head.class_agnostic else labels.clamp(min=0)
        probs = logits[torch.arange(len(labels), device=labels.device), channel.long()]
        # padding rows: probabilities 0, below any threshold mmdet takes (> 0)
        probs = probs.sigmoid() * (labels >= 0).to(probs.dtype)[:, None, None]
        return paste_masks(probs, scaled, *image_size, self.cfg.mask_thr_binary)


def detector_app(detector: nn.Module, steps: Dict, nms_candidates: int,
                 nms_iterations: int) -> DetectorApp:
    """The app module of ``detector``: ``MaskRCNNApp`` for a two-stage detector,
    ``DenseDetectorApp`` for a RetinaNet-like one (eval mode)."""
    if hasattr(detector, 'roi_head'):
        return MaskRCNNApp(detector, steps, nms_candidates, nms_iterations).eval()
    return DenseDetectorApp(detector, steps, nms_candidates, nms_iterations).eval()


class DetectorProgram(ExecuTorchSessions):
    """A detector app program, run by ``executorch.runtime``: called with a uint8 RGB image
    [H, W, 3], returns its detections by name (``DETECTOR_OUTPUTS``), padding cut off.
    ``contract``: the program's contract (``executorch_runtime.load_program``)."""

    def __init__(self, path: str):
        super().__init__(path)
        if self.contract['kind'] != 'detector':
            raise ValueError(f'{path!r} is a {self.contract["kind"]} program, not a detector')

    def __call__(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'{self.path!r} takes a uint8 RGB image [H, W, 3], not '
                             f'{image.dtype} {list(image.shape)}')
        return cut_padding(dict(zip(self.output_names, self.run(image))))


def mmdet_detections(detector: nn.Module, app: DetectorApp,
                     image: torch.Tensor) -> InstanceData:
    """mmdet's own predictions of ``detector`` (PyTorch) for a uint8 RGB HWC ``image``, fed
    the network input ``app`` prepares (so that only the post-processing differs from the
    program's), with boxes (and masks) at the image's size."""
    from mmdet.structures import DetDataSample
    h, w = image.shape[:2]
    with torch.no_grad():
        x, (net_h, net_w) = app.prepare(image)
        sample = DetDataSample(metainfo=dict(
            img_shape=(net_h, net_w), ori_shape=(h, w), scale_factor=(net_w / w, net_h / h),
            pad_shape=tuple(x.shape[2:]), batch_input_shape=tuple(x.shape[2:])))
        return detector.predict(x, [sample], rescale=True)[0].pred_instances


def compare_programs(path: str, detector: nn.Module, app: DetectorApp,
                     images: Sequence[torch.Tensor], box_tol: Optional[float] = None,
                     score_tol: Optional[float] = None) -> list:
    """Run the program at ``path`` and mmdet's prediction (``mmdet_detections``) on each
    image: per image its size, whether the program's NMS converged and ``compare_detections``'s
    report (default tolerances: the ONNX export's, the box one scaled up with the image)."""
    run = DetectorProgram(path)
    resized = run.contract.get('resized_size') or run.contract['max_size']
    checks = []
    for image in images:
        got = run(image)
        found = InstanceData(bboxes=got['boxes'], scores=got['scores'],
                             labels=got['labels'].long())
        if 'masks' in got:
            found.masks = got['masks'].bool()
        upscale = max([1.0] + [side / net for side, net in zip(image.shape, resized)])
        report = compare_detections(mmdet_detections(detector, app, image), found,
                                    (box_tol or BOX_TOL) * upscale, score_tol or SCORE_TOL)
        checks.append(dict(size=list(image.shape[:2]), converged=int(got['nms_converged'][0]),
                           **report))
    return checks
