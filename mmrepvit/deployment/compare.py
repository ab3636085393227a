"""Comparing a deployed model's predictions with the PyTorch model's, sample by sample."""
from typing import Dict, List

import torch

BOX_TOL = 1e-3  # pixels
SCORE_TOL = 1e-4
MASK_IOU = 0.99
LOGIT_TOL = 1e-4


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def match_detections(reference, other, box_tol: float = BOX_TOL,
                     score_tol: float = SCORE_TOL) -> List[tuple]:
    """Pairs (i, j) of detections that agree: same label, every box coordinate within
    ``box_tol`` and score within ``score_tol`` (each detection used once, best score first)."""
    if len(reference) == 0 or len(other) == 0:
        return []
    box = (reference.bboxes[:, None, :] - other.bboxes[None, :, :]).abs().amax(-1)
    close = (box <= box_tol) & \
        ((reference.scores[:, None] - other.scores[None, :]).abs() <= score_tol) & \
        (reference.labels[:, None] == other.labels[None, :])
    pairs, used = [], set()
    for i in reference.scores.argsort(descending=True).tolist():
        candidates = [j for j in close[i].nonzero().flatten().tolist() if j not in used]
        if candidates:
            j = min(candidates, key=lambda j: box[i, j].item())
            used.add(j)
            pairs.append((i, j))
    return pairs


def compare_detections(reference, other, box_tol: float = BOX_TOL,
                       score_tol: float = SCORE_TOL) -> Dict:
    """How two ``pred_instances`` agree: counts, ``leading`` (how many of the reference's
    best-scoring detections, in order, all have a counterpart), the largest differences and
    the smallest mask IoU over the agreeing pairs."""
    pairs = match_detections(reference, other, box_tol, score_tol)
    matched = {i for i, _ in pairs}
    leading = 0
    for i in reference.scores.argsort(descending=True).tolist():
        if i not in matched:
            break
        leading += 1
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
