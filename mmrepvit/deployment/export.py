"""Whole-model ONNX export, fused and with dynamic height and width, checked against PyTorch's
``test_step`` every time (``export_model``). Detectors go through mmdeploy with mmdet's
post-processing put back where mmdeploy's differs (``DetectorWithImageShape``); segmentors and
backbones through this project's own exporter (``export_onnx``).
"""
import copy
import os
import os.path as osp
import warnings
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import config_path
from ..fusion import fuse_model
from ..model_variants import build_target, load_target_config, synthetic_batch, target_kind
from .compare import (
    BOX_TOL,
    LOGIT_TOL,
    MASK_IOU,
    SCORE_TOL,
    check_onnx,
    compare_detections,
    compare_graphs,
    compare_segmentations,
)
from .deployed_model import open_model
from .mmdeploy_compat import mmdeploy_context
from .quantize import dataset_feeds, graph_inputs, quantize_onnx

OPSET = 17

# What can still differ with this project's export: float rounding only.
BY_DESIGN = [
    "NMS decisions on boxes whose IoU is within float rounding of the threshold, and the "
    "order of exactly tied scores at a top-k cut, can go either way: mmdet's batched NMS "
    "offsets boxes by class, ONNX Runtime compares the exact coordinates class by class.",
    "Heads other than RPNHead, StandardRoIHead's class-specific box head and RetinaHead (none "
    "in this project's configs) keep mmdeploy's own post-processing, which differs from "
    "mmdet's (docs/deployment.md).",
]


class SegmentorLogits(nn.Module):
    """A segmentor's ``encode_decode`` without metadata: normalised image (N, 3, H, W) ->
    class logits (N, K, H, W), the decode head's output resized to the input as mmseg does
    (``resize=False``: the decode head's output as it is)."""

    def __init__(self, segmentor, resize: bool = True):
        super().__init__()
        self.segmentor = segmentor
        self.resize = resize

    def forward(self, inputs):
        logits = self.segmentor._forward(inputs)
        if not self.resize:
            return logits
        return F.interpolate(logits, size=inputs.shape[2:], mode='bilinear',
                             align_corners=self.segmentor.align_corners)


class ScaleUpsample(nn.Module):
    """mmseg's ``Upsample`` by a scale factor, without turning the input size into Python
    ints (which the tracer would freeze into the graph): same output, dynamic in ONNX."""

    def __init__(self, upsample):
        super().__init__()
        self.scale_factor = upsample.scale_factor
        self.mode, self.align_corners = upsample.mode, upsample.align_corners

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode,
                             align_corners=self.align_corners)


def make_traceable(module):
    """Swap every size-freezing mmseg ``Upsample`` (scale factor, no fixed size) in place."""
    try:
        from mmseg.models.utils import Upsample
    except ImportError:
        return module
    for name, child in module.named_children():
        if isinstance(child, Upsample) and not child.size and child.scale_factor:
            setattr(module, name, ScaleUpsample(child))
        else:
            make_traceable(child)
    return module


def exportable(spec, cfg_options=None, checkpoint=None):
    """The fused module to export for ``spec`` and its output names."""
    kind = target_kind(spec)
    if kind not in ('backbone', 'mmseg'):
        raise ValueError(f'{spec!r} is a {kind} config; ONNX export covers backbones and '
                         f'segmentors (detectors need their post-processing exported too)')
    model = build_target(spec, 'fused', cfg_options=cfg_options, checkpoint=checkpoint)
    if kind == 'mmseg':
        return SegmentorLogits(model).eval(), ['logits']
    with torch.no_grad():
        n = len(model(synthetic_batch('backbone', (64, 64))))
    return model, [f'feat{i}' for i in range(n)]


def export_onnx(module, path, output_names, size=(224, 224), opset=OPSET):
    """Export a traceable copy of ``module`` (one image tensor in, tensors out) with dynamic H
    and W (``module`` itself is left as it is)."""
    module = make_traceable(copy.deepcopy(module)).eval()
    example = synthetic_batch('backbone', size)
    dynamic = {'input': {2: 'height', 3: 'width'},
               **{name: {2: f'{name}_height', 3: f'{name}_width'} for name in output_names}}
    with torch.no_grad():
        torch.onnx.export(module, (example, ), path, input_names=['input'],
                          output_names=output_names, dynamic_axes=dynamic,
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    import onnx
    onnx.checker.check_model(onnx.load(path))
    return path


def load_model(config: str, checkpoint: Optional[str] = None, cfg_options: Optional[dict] = None,
               seed: int = 0) -> nn.Module:
    """The fused PyTorch model of ``config`` (eval mode, CPU) that gets exported, from a plain
    or fused ``checkpoint``; without one, random weights (``model_variants.build_target``)
    with dense heads' scores spread around their threshold (``spread_dense_scores``)."""
    model = build_target(config, 'fused', cfg_options=cfg_options, checkpoint=checkpoint,
                         seed=seed)
    if checkpoint is None:
        spread_dense_scores(model, seed=seed)
    return model


@torch.no_grad()
def spread_dense_scores(model: nn.Module, size: Tuple[int, int] = (128, 128), seed: int = 0,
                        logit_mean: float = -4.0) -> nn.Module:
    """Give a randomly initialised sigmoid dense head (RetinaNet's) classification logits of
    unit spread around ``logit_mean`` (about 14% of scores above 0.05), in place: its stock
    initialisation scores every anchor below ``score_thr``, so a comparison would check nothing."""
    head = getattr(model, 'bbox_head', None)
    conv = getattr(head, 'conv_cls', None) or getattr(head, 'retina_cls', None)
    if conv is None or not getattr(head, 'use_sigmoid_cls', False):
        return model
    g = torch.Generator().manual_seed(seed)
    conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
    conv.bias.zero_()
    feats = model.extract_feat(torch.randn(1, 3, *size, generator=g))
    logits = head.forward(feats)[0]
    std = torch.cat([x.flatten() for x in logits]).std()
    conv.weight.div_(std)
    conv.bias.fill_(logit_mean)
    return model


def default_deploy_config(model: nn.Module) -> str:
    """The deploy config in ``configs/deploy`` for ``model``: with or without masks."""
    roi_head = getattr(model, 'roi_head', None)
    name = 'instance-seg' if getattr(roi_head, 'with_mask', False) else 'detection'
    return config_path(f'deploy/{name}_onnxruntime_dynamic.py')


def _add_metadata(path: str, **props):
    import onnx
    graph = onnx.load(path)
    for key, value in props.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = f'mmrepvit.{key}', str(value)
    onnx.checker.check_model(graph)
    onnx.save(graph, path)


class DetectorWithImageShape(nn.Module):
    """What gets traced for a detector: mmdeploy's rewritten network and heads, with mmdet's
    post-processing put back where mmdeploy changes it (docs/deployment.md, "What mmdeploy's
    post-processing changes"); the unpadded image size is a second input, ``img_shape`` (int64
    [height, width]). ``mmdet_nms=False`` keeps mmdeploy's own post-processing."""

    def __init__(self, detector: nn.Module, mmdet_nms: bool = True):
        super().__init__()
        self.detector = detector
        rpn = getattr(detector, 'rpn_head', None)
        roi_head = getattr(detector, 'roi_head', None)
        self.rpn_nms_per_level = mmdet_nms and rpn is not None and \
            rpn.test_cfg.get('nms_pre', -1) > 0
        self.class_boxes = mmdet_nms and type(roi_head).__name__ == 'StandardRoIHead' and \
            not roi_head.bbox_head.reg_class_agnostic
        head = getattr(detector, 'bbox_head', None)
        # anchor heads scored per class by a sigmoid, no score factors (RetinaNet's kind)
        self.dense_pairs = mmdet_nms and type(head).__name__ in ('RetinaHead', 'AnchorHead') \
            and head.use_sigmoid_cls and head.test_cfg.get('nms_pre', -1) > 0

    def forward(self, inputs: torch.Tensor, img_shape: torch.Tensor):
        from mmdet.structures import DetDataSample
        sample = DetDataSample()
        # set_field, not metainfo=: the latter deep-copies, cutting the tensor from the trace
        sample.set_field(img_shape, 'img_shape', field_type='metainfo')
        samples = [sample]
        detector = self.detector
        feats = detector.extract_feat(inputs)
        if getattr(detector, 'with_rpn', False):
            if self.rpn_nms_per_level:
                proposals = self.proposals(feats, sample.metainfo)
            else:
                proposals = detector.rpn_head.predict(feats, samples, rescale=False)
            if self.class_boxes:
                return self.detections(feats, proposals, sample.metainfo)
            return detector.roi_head.predict(feats, proposals, samples, rescale=False)
        if self.dense_pairs:
            return self.dense_detections(feats, sample.metainfo)
        return detector.bbox_head.predict(feats, samples, rescale=False)

    def dense_detections(self, feats, meta):
        """A dense head's detections as mmdet makes them: per level the best ``nms_pre``
        (anchor, class) pairs above ``score_thr``, zero-size boxes dropped, NMS per class."""
        head = self.detector.bbox_head
        cfg = head.test_cfg
        cls_scores, bbox_preds = head(feats)
        priors = head.prior_generator.grid_priors([c.shape[-2:] for c in cls_scores],
                                                  dtype=cls_scores[0].dtype,
                                                  device=cls_scores[0].device)
        classes = head.cls_out_channels
        boxes, scores, labels = [], [], []
        for cls, reg, prior in zip(cls_scores, bbox_preds, priors):
            pair_scores = cls[0].permute(1, 2, 0).reshape(-1).sigmoid()
            pair_scores = torch.where(pair_scores > cfg.score_thr, pair_scores,
                                      pair_scores.new_zeros(()))
            top, index = pair_scores.topk(cfg.nms_pre)  # mmdeploy clamps k to the size
            anchor = index // classes
            deltas = reg[0].permute(1, 2, 0).reshape(-1, head.bbox_coder.encode_size)
            boxes.append(head.bbox_coder.decode(prior[anchor][None], deltas[anchor][None],
                                                max_shape=meta['img_shape'])[0])
            scores.append(top)
            labels.append(index % classes)
        return grouped_nms(torch.cat(boxes)[None], torch.cat(scores)[None], torch.cat(labels),
                           classes, cfg, min_size=cfg.get('min_bbox_size', -1))

    def detections(self, feats, proposals, meta):
        """The box head's detections as mmdet makes them (every (proposal, class) pair above
        ``score_thr`` its own NMS candidate with that class's box), then masks as mmdeploy
        does."""
        roi_head = self.detector.roi_head
        bbox_head, cfg = roi_head.bbox_head, roi_head.test_cfg
        boxes = proposals[0][..., :4]  # (1, K, 4)
        rois = torch.cat([boxes.new_zeros(boxes.shape[:2] + (1, )), boxes], -1).view(-1, 5)
        out = roi_head._bbox_forward(feats, rois)
        if bbox_head.custom_cls_channels:
            scores = bbox_head.loss_cls.get_activation(out['cls_score'])
        else:
            scores = F.softmax(out['cls_score'], dim=-1)
        classes = bbox_head.num_classes
        # proposals padded in by mmdeploy's top-k (score 0) are not candidates
        scores = scores[:, :classes] * (proposals[0][0, :, 4:5] > 0).to(scores)
        scores = scores.reshape(1, -1)  # (1, K * C): proposal-major, as mmdet
        decoded = bbox_head.bbox_coder.decode(boxes, out['bbox_pred'][None],
                                              max_shape=meta['img_shape'])
        decoded = decoded.reshape(1, -1, 4)  # (1, K * C, 4)
        label = torch.arange(scores.shape[1], device=scores.device) % classes
        dets, labels = grouped_nms(decoded, scores, label, classes, cfg, cfg.score_thr)
        if not roi_head.with_mask:
            return dets, labels
        return roi_head.predict_mask(feats, [meta], (dets, labels), rescale=False)

    def proposals(self, feats, meta):
        """The RPN's proposals as mmdet makes them: mmdeploy's per-level top-k and box
        decoding, then zero-size boxes dropped and NMS per FPN level (the level as NMS class)."""
        rpn = self.detector.rpn_head
        cfg = rpn.test_cfg
        boxes, scores = rpn.predict_by_feat(*rpn(feats), batch_img_metas=[meta], cfg=cfg,
                                            rescale=False, with_nms=False)
        # mmdeploy pads each level to exactly nms_pre candidates before its top-k
        level = torch.arange(boxes.shape[1], device=boxes.device) // cfg.nms_pre
        return grouped_nms(boxes, scores[..., 0], level, len(feats), cfg,
                           min_size=cfg.get('min_bbox_size', -1))


def grouped_nms(boxes, scores, groups, count: int, cfg, score_threshold: float = 0.0,
                min_size: float = -1):
    """mmdeploy's ``multiclass_nms`` (ONNX NonMaxSuppression) of ``boxes`` (1, N, 4), each
    candidate scored (``scores`` (1, N)) only in its group's column of ``count``, boxes not
    wider and higher than ``min_size`` (when >= 0) dropped, the best ``cfg.max_per_img`` kept."""
    from mmdeploy.mmcv.ops import multiclass_nms
    if min_size >= 0:  # score 0: below NMS's (strict) threshold
        wh = boxes[..., 2:] - boxes[..., :2]
        scores = scores * (wh > min_size).all(-1).to(scores)
    one_hot = (groups[:, None] == torch.arange(count, device=groups.device)).to(scores)
    return multiclass_nms(boxes, scores[..., None] * one_hot, cfg.max_per_img,
                          nms_type=cfg.nms.get('type'), iou_threshold=cfg.nms.iou_threshold,
                          score_threshold=score_threshold, pre_top_k=-1,
                          keep_top_k=cfg.max_per_img)


def export_detector(model: nn.Module, path: str, deploy_cfg: Optional[str] = None,
                    size: Tuple[int, int] = (320, 320)) -> str:
    """Export a (fused) mmdet detector with mmdeploy to ``path``: one preprocessed image (1, 3,
    H, W) and its unpadded ``img_shape`` in; ``dets`` / ``labels`` (/ ``masks``) out."""
    deploy_cfg = deploy_cfg or default_deploy_config(model)
    with mmdeploy_context(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # tracer warnings about Python values in mmdet code
        from mmdeploy.apis.onnx import export
        from mmdeploy.codebase import import_codebase
        from mmdeploy.utils import Codebase
        from mmdeploy.utils import load_config as load_deploy_config
        import_codebase(Codebase.MMDET)  # registers mmdeploy's mmdet rewriters
        cfg = load_deploy_config(deploy_cfg)[0]
        onnx_cfg = cfg.onnx_config
        with torch.no_grad():
            data = model.data_preprocessor(synthetic_batch('mmdet', size), False)
        img_shape = torch.tensor(data['data_samples'][0].img_shape[:2], dtype=torch.long)
        prefix = path[:-len('.onnx')] if path.endswith('.onnx') else path
        export(DetectorWithImageShape(copy.deepcopy(model)), (data['inputs'], img_shape),
               output_path_prefix=prefix, backend=cfg.backend_config.type,
               context_info=dict(deploy_cfg=cfg), input_names=onnx_cfg.input_names,
               output_names=onnx_cfg.output_names, opset_version=onnx_cfg.opset_version,
               dynamic_axes=onnx_cfg.dynamic_axes,
               keep_initializers_as_inputs=onnx_cfg.keep_initializers_as_inputs,
               optimize=False)
    if prefix + '.onnx' != path:
        os.replace(prefix + '.onnx', path)
    _add_metadata(path, kind='mmdet', deploy_config=osp.basename(deploy_cfg),
                  export_size=f'{size[0]}x{size[1]}')
    return path


def export_segmentor(model: nn.Module, path: str, size: Tuple[int, int] = (512, 512)) -> str:
    """Export a (fused) mmseg segmentor with this project's exporter: one normalised image in,
    ``logits`` at the image's size out."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        export_onnx(SegmentorLogits(model), path, ['logits'], size)
    _add_metadata(path, kind='mmseg', export_size=f'{size[0]}x{size[1]}')
    return path


# a large and a small one; the detector's are the benchmark's 800x1333 rounded to a multiple of 32
DEFAULT_CHECK_SIZES = {'mmdet': ((800, 1344), (480, 640)), 'mmseg': ((512, 512), (320, 448))}


def check_model(model: nn.Module, kind: str, config: str, path: str,
                sizes: Sequence[Tuple[int, int]], threads: Optional[int] = None, seed: int = 1,
                cfg_options: Optional[dict] = None, runtime: str = 'onnxruntime',
                precision: Optional[str] = None) -> list:
    """Run ``path`` (through ``open_model``, in ``runtime`` and ``precision``) and
    ``model`` (PyTorch ``test_step``) on the same synthetic images at every size; one
    comparison per size (see ``compare``)."""
    onnx_model = open_model(load_target_config(config, cfg_options), path, runtime, precision,
                            threads)
    results = []
    for size in sizes:
        size = tuple(size)
        with torch.no_grad():
            expected = model.test_step(synthetic_batch(kind, size, seed=seed))[0]
            got = onnx_model.test_step(synthetic_batch(kind, size, seed=seed))[0]
        if kind == 'mmdet':
            report = compare_detections(expected.pred_instances, got.pred_instances)
        else:
            report = compare_segmentations(expected, got)
            report['output_shapes'] = [[1] + report['shape']]  # as backbones report them
        results.append(dict(size=list(size), **report))
    return results


def passed(kind: str, checks: list) -> bool:
    """Segmentors: every logit within ``LOGIT_TOL``. Detectors: at least 95% of the
    detections agree (``compare_detections``; the rest may differ by float rounding at NMS,
    ``BY_DESIGN``), and every agreeing mask has IoU >= ``MASK_IOU``."""
    if kind == 'mmseg':
        return all(c['max_abs_diff'] <= LOGIT_TOL for c in checks)
    return all(c['agree'] >= 0.95 * max(c['pytorch'], c['onnx']) and
               (c['min_mask_iou'] is None or c['min_mask_iou'] >= MASK_IOU) for c in checks)


def export_model(config: str, path: str, checkpoint: Optional[str] = None,
                 export_size: Optional[Tuple[int, int]] = None,
                 check_sizes: Optional[Sequence[Tuple[int, int]]] = None,
                 deploy_cfg: Optional[str] = None, cfg_options: Optional[dict] = None,
                 threads: Optional[int] = None,
                 model: Optional[nn.Module] = None, int8_path: Optional[str] = None,
                 calib_images: int = 32, reduce_range: Optional[bool] = None) -> Dict:
    """Export the whole model of ``config`` (detector or segmentor) to ``path`` and check it
    against PyTorch at ``check_sizes``; returns a JSON-ready report. ``model``: export this
    built model (fused here) instead of loading ``checkpoint``. ``int8_path``: also write an
    int8 copy there (``export_int8``; reported under ``int8``, not deciding ``passed``)."""
    kind = target_kind(config)
    if kind not in DEFAULT_CHECK_SIZES:
        raise ValueError(f'{config!r} is a {kind}; export_model takes detector and segmentor '
                         f'configs (backbones: export_and_check)')
    if model is None:
        model = load_model(config, checkpoint, cfg_options)
    else:
        fuse_model(model.eval())
    sizes = [tuple(s) for s in (DEFAULT_CHECK_SIZES[kind] if check_sizes is None
                                else check_sizes)]
    export_size = tuple(export_size or sizes[0])
    if kind == 'mmdet':
        deploy_cfg = deploy_cfg or default_deploy_config(model)
        export_detector(model, path, deploy_cfg, export_size)
        outputs = 'dets, labels, masks' if 'instance-seg' in deploy_cfg else 'dets, labels'
    else:
        export_segmentor(model, path, export_size)
        outputs = 'logits'
    checks = check_model(model, kind, config, path, sizes, threads,
                         cfg_options=cfg_options) if sizes else []
    int8 = export_int8(config, path, int8_path, calib_images, cfg_options,
                       reduce_range) if int8_path else None
    return dict(target=config, path=path, kind=kind, export_size=list(export_size),
                opset=OPSET, outputs=outputs, deploy_config=deploy_cfg, checks=checks,
                passed=passed(kind, checks),
                tolerances=dict(box_px=BOX_TOL, score=SCORE_TOL, mask_iou=MASK_IOU,
                                logits=LOGIT_TOL),
                by_design=BY_DESIGN if kind == 'mmdet' else [], int8=int8)


def export_int8(config: str, path: str, int8_path: str, calib_images: int = 32,
                cfg_options: Optional[dict] = None, reduce_range: Optional[bool] = None) -> Dict:
    """Quantise ``path`` to int8 at ``int8_path`` (``quantize_onnx``), calibrated on
    ``calib_images`` val images; report how it follows the float graph on up to 8 of them."""
    feeds = dataset_feeds(load_target_config(config, cfg_options), graph_inputs(path),
                          calib_images)
    report = quantize_onnx(path, int8_path, feeds, reduce_range)
    report['vs_float'] = compare_graphs(path, int8_path, feeds[:8])
    return report


def export_and_check(spec, path, export_size=(224, 224), check_sizes=((224, 224), (320, 448)),
                     cfg_options=None, threads=2, checkpoint=None):
    """Export ``spec`` fused to ``path`` and compare ONNX Runtime with PyTorch."""
    module, names = exportable(spec, cfg_options, checkpoint)
    export_onnx(module, path, names, export_size)
    return dict(target=spec, path=path, export_size=list(export_size), opset=OPSET,
                outputs=names, checks=check_onnx(path, module, check_sizes, threads))
