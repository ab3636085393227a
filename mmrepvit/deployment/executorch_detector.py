"""ExecuTorch app programs for detectors: "image in, detections out".

A RetinaNet-like detector (a dense anchor head scored per class by a sigmoid, as
``export.DetectorWithImageShape.dense_detections`` describes) becomes one program
(``DenseDetectorApp``) that takes the image exactly as an app holds it, **uint8 RGB in HWC
layout, [H, W, 3]**, and does inside what the config's test pipeline and mmdet do:

- the test pipeline's keep-ratio ``Resize`` and the data preprocessor's normalisation and
  padding (``executorch_program.image_steps``, as the segmentor's app program does them);
- the network (its backbone and neck are what an int8 program quantises);
- mmdet's post-processing: per FPN level the best ``nms_pre`` (anchor, class) pairs above
  ``score_thr``, their boxes decoded and clipped to the resized image, rescaled to the
  original image's pixels, boxes of ``min_bbox_size`` or less dropped, NMS per class
  (``greedy_nms``) and the best ``max_per_img`` kept.

A Mask R-CNN becomes ``executorch_two_stage.MaskRCNNApp`` (masks out too); ``detector_app``
picks the app by the model.

A program takes images of one size, its export size (``FIXED_SIZE_REASON``): an app
resizes to it first (keeping the ratio and padding) or exports one program per camera size.

Outputs (fixed size, N = ``max_per_img``): ``boxes`` float32 [N, 4] (x1, y1, x2, y2 in the
original image's pixels), ``scores`` float32 [N], ``labels`` int32 [N] and
``num_detections`` int32 [1]. Rows are sorted by score; rows from ``num_detections`` on are
padding: box 0, score 0, label -1.

NMS is plain tensor arithmetic (no torchvision or mmcv op): the best ``nms_candidates``
pairs over all levels, the IoU matrix of their class-offset boxes (as mmcv's
``batched_nms``), and exact greedy suppression reached by a fixed-point iteration
(``greedy_nms``). ExecuTorch 1.5.1 rejects ``torch.while_loop`` ("Unsupported control flow
operator: while_loop"), so the iteration is unrolled ``nms_iterations`` times; the program
also reports whether it had converged (``nms_converged``, int32 [1]: 1 when the suppression
is exactly greedy NMS's).
"""
import json
import os.path as osp
from typing import Dict, Iterable, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.structures import InstanceData

from ..config import default_dataset_meta
from ..fusion import fuse_model
from ..model_variants import load_target_config
from .compare import BOX_TOL, SCORE_TOL, compare_detections
from .executorch_program import (
    SegmentorApp,
    _write,
    check_precision,
    export_module,
    lower,
    quantize_module,
    resize_image,
    synthetic_image,
    val_images,
)
from .executorch_runtime import (
    CONTRACT_VERSION,
    check_input_size,
    image_steps,
    load_program,
    require_executorch,
)
from .export import load_model

DETECTOR_OUTPUTS = ['boxes', 'scores', 'labels', 'num_detections', 'nms_converged']
# the best (anchor, class) pairs over all levels that enter NMS, and the unrolled iterations
# of its fixed point (measured on RetinaNet outputs: docs/deployment.md)
DEFAULT_NMS_CANDIDATES = 1000
DEFAULT_NMS_ITERATIONS = 12
# why a detector program takes one image size (measured with torch 2.13, ExecuTorch 1.5.1)
FIXED_SIZE_REASON = (
    'torch.export of the tiny RetinaNet app with dynamic height and width took 232 s (2.7 s '
    'fixed) and lowering it did not end within 3 minutes (38 s fixed); the keep-ratio '
    'resize\'s torch.sym_min / sym_max, besides, are not ExecuTorch operators (lowering fails '
    'on them unless the size range decides them)')


def detector_image_steps(cfg) -> Dict:
    """``image_steps`` of a detector config: mmdet's data preprocessor pads to
    ``pad_size_divisor`` with ``pad_value``. Raises ValueError unless the test pipeline
    resizes once, keeping the ratio (what boxes are rescaled back through)."""
    pipeline = [s for s in cfg.test_dataloader.dataset.pipeline
                if s['type'].split('.')[-1] != 'PackDetInputs']
    steps = image_steps(type(cfg)(dict(test_dataloader=dict(dataset=dict(pipeline=pipeline)),
                                       model=cfg.model)))
    if [s[0] for s in steps['resizes']] != ['keep_ratio']:
        raise ValueError(f'test pipeline resizes {steps["resizes"]}: a detector app program '
                         f'takes exactly one keep-ratio Resize')
    pre = cfg.model.data_preprocessor
    steps.update(pad_divisor=pre.get('pad_size_divisor', 1) or 1, pad_size=None,
                 pad_val=float(pre.get('pad_value', 0)))
    return steps


def greedy_nms(boxes: torch.Tensor, valid: torch.Tensor, iou_threshold: float,
               iterations: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Greedy NMS of ``boxes`` [M, 4] sorted best first (``valid`` [M] bool: candidates):
    which are kept, and whether the result is exact.

    Greedy NMS keeps box j iff no kept box before it overlaps it by IoU >
    ``iou_threshold`` (mmcv's rule). That is the one fixed point of
    ``keep = valid & ~any_i(over[i, j] & keep[i])``; iterating from ``keep = valid`` makes
    one more box of every suppression chain right per step, so after ``iterations`` steps it
    is exact if the last step changed nothing (the second output)."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    low = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    high = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (high - low).clamp(min=0).prod(-1)
    iou = inter / (area[:, None] + area[None, :] - inter)
    count = boxes.shape[0]
    order = torch.arange(count, device=boxes.device)
    over = (iou > iou_threshold) & (order[:, None] < order[None, :]) & valid[:, None]
    keep = valid
    previous = keep
    for _ in range(iterations):
        previous = keep
        keep = valid & ~(over & keep[:, None]).any(0)
    return keep, (keep == previous).all()


class DetectorFeatures(nn.Module):
    """Backbone and neck: normalised, padded image (1, 3, H, W) -> the FPN's maps (what int8
    quantises; XNNPACK failed to load programs with the dense head quantised too:
    "XNNCompiler::compileModel failed")."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, x):
        return tuple(self.detector.extract_feat(x))


class DetectorApp(nn.Module):
    """What detector app programs share: the test pipeline's resize, normalisation and
    padding (``prepare``), the network (``DetectorFeatures``) and the final NMS's settings.
    ``outputs``: the names of ``forward``'s outputs."""

    prepare = SegmentorApp.prepare
    outputs = DETECTOR_OUTPUTS

    def __init__(self, detector: nn.Module, steps: Dict, cfg, nms_candidates: int,
                 nms_iterations: int):
        super().__init__()
        if nms_candidates < cfg.max_per_img:
            raise ValueError(f'nms_candidates={nms_candidates} is below max_per_img='
                             f'{cfg.max_per_img}')
        self.network = DetectorFeatures(detector)
        self.cfg, self.steps = cfg, steps
        self.nms_candidates, self.nms_iterations = nms_candidates, nms_iterations
        self.register_buffer('mean', torch.tensor(steps['mean']).view(1, 3, 1, 1))
        self.register_buffer('std', torch.tensor(steps['std']).view(1, 3, 1, 1))

    @staticmethod
    def int8_network(quantized: nn.Module) -> nn.Module:
        """What the program runs as its network once ``quantized`` is the int8 one."""
        return quantized


class DenseDetectorApp(DetectorApp):
    """A RetinaNet-like detector as an app calls it: uint8 RGB image [H, W, 3] -> boxes,
    scores, labels, num_detections, nms_converged (module docstring). ``steps``:
    ``detector_image_steps`` of the config."""

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
        self.head = head

    def forward(self, image: torch.Tensor):
        h, w = image.shape[0], image.shape[1]
        x, (net_h, net_w) = self.prepare(image)
        cls_scores, bbox_preds = self.head(self.network(x))
        boxes, scores, labels = candidates(self.head, self.cfg.nms_pre, cls_scores,
                                           bbox_preds, (net_h, net_w))
        # mmdet's Resize scale factor is (net_w / w, net_h / h); boxes go back through it
        boxes = boxes * boxes.new_tensor([w / net_w, h / net_h] * 2)
        return select(boxes, scores, labels, self.cfg, self.nms_candidates,
                      self.nms_iterations)


def check_nms(cfg):
    """``cfg`` (a head's test_cfg), or a ValueError unless its NMS is plain NMS."""
    if cfg.nms.get('type', 'nms') != 'nms':
        raise ValueError(f'test_cfg.nms={dict(cfg.nms)}: the app program runs plain NMS '
                         f'(type="nms")')
    return cfg


def candidates(head: nn.Module, nms_pre: int, cls_scores, bbox_preds, img_shape):
    """Per level the best ``nms_pre`` (anchor, class) pairs of a sigmoid anchor head (score,
    box decoded and clipped to ``img_shape``, class): a fixed count per level, pairs a level
    lacks padded in with score -1."""
    classes = head.cls_out_channels
    priors = head.prior_generator.grid_priors([c.shape[-2:] for c in cls_scores],
                                              dtype=cls_scores[0].dtype,
                                              device=cls_scores[0].device)
    boxes, scores, labels = [], [], []
    for cls, reg, prior in zip(cls_scores, bbox_preds, priors):
        pair_scores = cls[0].permute(1, 2, 0).reshape(-1).sigmoid()
        pair_scores = torch.cat([pair_scores, pair_scores.new_full((nms_pre, ), -1.0)])
        top, index = pair_scores.topk(nms_pre)
        anchor = (index // classes).clamp(max=prior.shape[0] - 1)
        deltas = reg[0].permute(1, 2, 0).reshape(-1, head.bbox_coder.encode_size)
        boxes.append(head.bbox_coder.decode(prior[anchor], deltas[anchor], max_shape=img_shape))
        scores.append(top)
        labels.append(index % classes)
    return torch.cat(boxes), torch.cat(scores), torch.cat(labels)


def select(boxes, scores, labels, cfg, nms_candidates: int, nms_iterations: int):
    """mmdet's score threshold (``cfg.score_thr``, 0 without), minimum box size, NMS per
    class (label) and ``max_per_img`` over candidates, as fixed-size outputs: boxes, scores,
    labels (int32), their count and whether NMS converged (module docstring)."""
    scores, order = scores.topk(min(nms_candidates, scores.shape[0]))
    boxes, labels = boxes[order], labels[order]
    valid = scores > cfg.get('score_thr', 0.0)
    if cfg.get('min_bbox_size', -1) >= 0:
        valid = valid & ((boxes[:, 2:] - boxes[:, :2]) > cfg.min_bbox_size).all(-1)
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


def class_names(cfg, model: nn.Module) -> list:
    """The detector's classes: the config's test dataset's names, else ``class0``..."""
    names = [str(c) for c in (default_dataset_meta(cfg) or {}).get('classes') or ()]
    count = (model.roi_head if hasattr(model, 'roi_head') else model).bbox_head.num_classes
    return names if len(names) == count else [f'class{i}' for i in range(count)]


def export_detector_program(config: str, path: str, checkpoint: Optional[str] = None,
                            precision: str = 'f32', calib_images: int = 32,
                            export_size: Tuple[int, int] = (800, 1216),
                            cfg_options: Optional[dict] = None,
                            model: Optional[nn.Module] = None,
                            calibration: Optional[Iterable[torch.Tensor]] = None,
                            nms_candidates: int = DEFAULT_NMS_CANDIDATES,
                            nms_iterations: int = DEFAULT_NMS_ITERATIONS) -> Dict:
    """Write the app program of the RetinaNet-like detector of ``config``
    (``DenseDetectorApp``) to ``path`` in ``precision``, for images of ``export_size``
    (height, width) alone (``FIXED_SIZE_REASON``). Returns its contract and ``checks``: how
    the program (run by ``executorch.runtime``) compares with mmdet's prediction on a
    synthetic image (``compare_programs``; int8 against the float32 model).

    ``model``: this PyTorch detector, fused here, instead of one built from ``checkpoint``
    (random weights with spread scores without either). int8: calibrated on
    ``calib_images`` images of the config's validation set (``calibration``: these uint8 RGB
    HWC images instead)."""
    require_executorch()
    cfg = load_target_config(config, cfg_options)
    if model is None:
        model = load_model(config, checkpoint, cfg_options)
    else:
        fuse_model(model.eval())
    steps = detector_image_steps(cfg)
    app, reference = (detector_app(model, steps, nms_candidates, nms_iterations)
                      for _ in range(2))
    example = torch.zeros(*export_size, 3, dtype=torch.uint8)
    if check_precision(precision) == 'int8':
        if calibration is None:
            calibration = val_images(cfg, calib_images)
        inputs = [app.prepare(resize_image(image, export_size))[0] for image in calibration]
        app.network = app.int8_network(quantize_module(app.network, app.prepare(example)[0],
                                                       inputs))
    contract = dict(contract_version=CONTRACT_VERSION, kind='detector', input_layout='HWC',
                    input_dtype='uint8', input_channels='RGB', min_size=list(export_size),
                    max_size=list(export_size), output_names=list(app.outputs),
                    class_names=class_names(cfg, model), precision=precision,
                    config_name=osp.basename(config), image_steps=json.dumps(steps),
                    max_detections=app.cfg.max_per_img, nms_candidates=nms_candidates,
                    nms_iterations=nms_iterations)
    _write(path, lower(export_module(app, example), contract))
    image = synthetic_image(export_size)
    return dict(path=path, contract=contract,
                checks=compare_programs(path, model, reference, [image]))


def detector_app(detector: nn.Module, steps: Dict, nms_candidates: int,
                 nms_iterations: int) -> DetectorApp:
    """The app module of ``detector``: ``MaskRCNNApp`` for a two-stage detector,
    ``DenseDetectorApp`` for a RetinaNet-like one (eval mode)."""
    if hasattr(detector, 'roi_head'):
        from .executorch_two_stage import MaskRCNNApp
        return MaskRCNNApp(detector, steps, nms_candidates, nms_iterations).eval()
    return DenseDetectorApp(detector, steps, nms_candidates, nms_iterations).eval()


class DetectorProgram:
    """A detector app program, run by ``executorch.runtime``: called with a uint8 RGB image
    [H, W, 3], returns its detections by name (``DETECTOR_OUTPUTS``), padding cut off.
    ``contract``: the program's contract (``executorch_program.read_contract``)."""

    def __init__(self, path: str):
        self.path = path
        program, self.contract = load_program(path)
        if self.contract['kind'] != 'detector':
            raise ValueError(f'{path!r} is a {self.contract["kind"]} program, not a detector')
        self.method = program.load_method('forward')

    def __call__(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'{self.path!r} takes a uint8 RGB image [H, W, 3], not '
                             f'{image.dtype} {list(image.shape)}')
        check_input_size(self.contract, image, self.path)
        outputs = self.method.execute([image.contiguous()])
        return cut_padding(dict(zip(self.contract['output_names'], outputs)))


def cut_padding(outputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    count = int(outputs['num_detections'][0])
    return dict(outputs, **{name: outputs[name][:count] for name in
                            ('boxes', 'scores', 'labels', 'masks') if name in outputs})


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
    """Run the program at ``path`` (``executorch.runtime``) and mmdet's prediction
    (``mmdet_detections``) on each image; per image its size, whether the program's NMS
    converged and ``compare.compare_detections``'s report (default tolerances: the ONNX
    export's)."""
    run = DetectorProgram(path)

    checks = []
    for image in images:
        got = run(image)
        found = InstanceData(bboxes=got['boxes'], scores=got['scores'],
                             labels=got['labels'].long())
        if 'masks' in got:
            found.masks = got['masks'].bool()
        report = compare_detections(mmdet_detections(detector, app, image), found,
                                    box_tol or BOX_TOL, score_tol or SCORE_TOL)
        checks.append(dict(size=list(image.shape[:2]), converged=int(got['nms_converged'][0]),
                           **report))
    return checks
