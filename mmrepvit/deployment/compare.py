"""Comparing a deployed model with the PyTorch model it came from (raw graph outputs, and
predictions sample by sample), and an int8 graph with its float graph."""
from typing import Dict, Sequence

import numpy as np
import torch

from ..model_variants import synthetic_batch
from .runtime import ort_session

BOX_TOL = 1e-3  # pixels
SCORE_TOL = 1e-4
MASK_IOU = 0.99
LOGIT_TOL = 1e-4


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def compare_detections(reference, other, box_tol: float = BOX_TOL,
                       score_tol: float = SCORE_TOL) -> Dict:
    """How two ``pred_instances`` agree: pairs agree with the same label, every box coordinate
    within ``box_tol`` and score within ``score_tol`` (each detection used once, best score
    first). Returns counts, ``leading`` (how many of the reference's best detections, in
    order, all agree), the largest differences and the smallest mask IoU of the pairs."""
    order = reference.scores.argsort(descending=True).tolist()
    pairs, used = [], set()
    if len(reference) and len(other):
        box = (reference.bboxes[:, None, :] - other.bboxes[None, :, :]).abs().amax(-1)
        close = (box <= box_tol) & \
            ((reference.scores[:, None] - other.scores[None, :]).abs() <= score_tol) & \
            (reference.labels[:, None] == other.labels[None, :])
        for i in order:
            candidates = [j for j in close[i].nonzero().flatten().tolist() if j not in used]
            if candidates:
                j = min(candidates, key=lambda j: box[i, j].item())
                used.add(j)
                pairs.append((i, j))
    matched = {i for i, _ in pairs}
    leading = next((n for n, i in enumerate(order) if i not in matched), len(order))
    report = dict(pytorch=len(reference), onnx=len(other), agree=len(pairs), leading=leading,
                  max_box_diff=0.0, max_score_diff=0.0, min_mask_iou=None)
    if pairs:
        i, j = (torch.tensor(x) for x in zip(*pairs))
        report['max_box_diff'] = float((reference.bboxes[i] - other.bboxes[j]).abs().max())
        report['max_score_diff'] = float((reference.scores[i] - other.scores[j]).abs().max())
        if 'masks' in reference and 'masks' in other:
            report['min_mask_iou'] = min(_mask_iou(reference.masks[a], other.masks[b])
                                         for a, b in pairs)
    return report


def compare_segmentations(reference, other) -> Dict:
    """Largest logit difference and the fraction of pixels whose predicted class agrees, for
    two ``SegDataSample`` s (both at the original image size)."""
    a, b = reference.seg_logits.data, other.seg_logits.data
    same = (reference.pred_sem_seg.data == other.pred_sem_seg.data).float().mean()
    return dict(shape=list(a.shape), max_abs_diff=float((a - b).abs().max()),
                max_abs_logit=float(a.abs().max()), pixels_agree=float(same))


def check_onnx(path, module, sizes, threads=2, seed=1):
    """Run the ONNX file under ONNX Runtime and ``module`` in PyTorch at every size; returns
    ``[{'size', 'max_abs_diff', 'max_abs_output', 'output_shapes'}]`` (worst over outputs)."""
    session = ort_session(path, threads=threads)
    results = []
    for size in sizes:
        x = synthetic_batch('backbone', tuple(size), seed=seed)
        with torch.no_grad():
            expected = module(x)
        expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
        got = session.run(None, {'input': x.numpy()})
        diff = max(float((torch.from_numpy(g) - e).abs().max()) for g, e in zip(got, expected))
        results.append(dict(size=list(size), max_abs_diff=diff,
                            max_abs_output=max(float(e.abs().max()) for e in expected),
                            output_shapes=[list(g.shape) for g in got]))
    return results


def compare_graphs(float_path: str, int8_path: str, feeds: Sequence[Dict[str, np.ndarray]],
                   min_score: float = 0.3, min_iou: float = 0.9) -> Dict:
    """How an int8 graph's raw outputs follow the float graph's on ``feeds``. Segmentor: the
    share of pixels whose class agrees, the largest logit difference and logit. Detector: how
    many of the float detections scoring >= ``min_score`` the int8 graph also makes (same
    label, box IoU >= ``min_iou``, each used once), and their largest score difference."""
    reference, quantised = ort_session(float_path), ort_session(int8_path)
    names = [o.name for o in reference.get_outputs()]
    if names[0] == 'logits':
        same = total = 0
        worst = largest = 0.0
        for feed in feeds:
            a, b = reference.run(None, feed)[0], quantised.run(None, feed)[0]
            same += int((a.argmax(1) == b.argmax(1)).sum())
            total += a.shape[0] * a.shape[2] * a.shape[3]
            worst = max(worst, float(np.abs(a - b).max()))
            largest = max(largest, float(np.abs(a).max()))
        return dict(images=len(feeds), pixels_agree=same / total, max_abs_logit_diff=worst,
                    max_abs_logit=largest)
    kept = made = 0
    worst = 0.0
    for feed in feeds:
        (a, la), (b, lb) = (s.run(names[:2], feed) for s in (reference, quantised))
        a, la, b, lb = a[0], la[0], b[0], lb[0]
        used = set()
        for i in np.flatnonzero((a[:, 4] >= min_score) & (a[:, 4] > 0)):  # 0: padding
            kept += 1
            iou = _box_iou(a[i, :4], b[:, :4])
            iou[[j for j in range(len(b)) if lb[j] != la[i] or j in used]] = 0
            j = int(iou.argmax()) if len(b) else -1
            if j >= 0 and iou[j] >= min_iou:
                used.add(j)
                made += 1
                worst = max(worst, abs(float(a[i, 4] - b[j, 4])))
    return dict(images=len(feeds), min_score=min_score, min_iou=min_iou, detections=kept,
                also_made=made, max_score_diff=worst)


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * \
        np.clip(boxes[..., 3] - boxes[..., 1], 0, None)


def _box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x1, y1, x2, y2) box with each of ``boxes``."""
    inter = np.clip(np.minimum(box[2:], boxes[:, 2:]) - np.maximum(box[:2], boxes[:, :2]),
                    0, None).prod(1)
    return inter / np.maximum(_area(box) + _area(boxes) - inter, 1e-12)
