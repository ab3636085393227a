"""RoIAlign (average pooling) as two small matrix products per RoI.

mmcv's CPU RoIAlign is one thread walking every sample point, a large share of a fused Mask
R-CNN's time on CPU (docs/speed.md). Bilinear sampling and the average over a bin are separable:
each RoI's output is ``Wy @ crop @ Wx^T``, ``Wy`` / ``Wx`` (bins x rows / cols) holding the
interpolation weights over the feature rows / columns the RoI touches. Same function as mmcv's
(boundary rules included), float rounding aside; differentiable in the features, not the boxes.
"""
import torch
import torch.nn as nn


def _axis_weights(start, size, length, bins, sampling_ratio):
    """Along one axis: each RoI's interpolation weights (K, bins, L) over a window of feature
    rows (or columns), the window's first index (K,) and its length (K,) (L: the longest)."""
    bin_size = size / bins
    grid = torch.full_like(size, sampling_ratio) if sampling_ratio > 0 else torch.ceil(bin_size)
    max_grid = int(grid.max().item()) if grid.numel() else 0
    first = start.clamp(min=0).floor().clamp(max=length - 1)
    last = (start + size).clamp(min=0).floor().add(1).clamp(max=length - 1)
    span = (last - first + 1).long()
    width = int(span.max().item()) if span.numel() else 1
    weights = start.new_zeros(len(start), bins, width)
    if max_grid == 0:
        return weights, first.long(), span
    step = torch.arange(max_grid, dtype=start.dtype, device=start.device)
    grid_ = grid.clamp(min=1)[:, None, None]
    pos = (start[:, None, None]
           + torch.arange(bins, dtype=start.dtype, device=start.device)[None, :, None]
           * bin_size[:, None, None] + (step + 0.5) * bin_size[:, None, None] / grid_)
    used = (step < grid[:, None, None]) & (pos >= -1) & (pos <= length)
    pos = pos.clamp(min=0)
    low = pos.floor()
    at_end = low >= length - 1
    low = torch.where(at_end, torch.full_like(low, length - 1), low)
    high = torch.where(at_end, low, low + 1)
    frac = torch.where(at_end, torch.zeros_like(pos), pos - low)
    scale = used.to(start.dtype) / grid_
    origin = first[:, None, None]
    # padding slots (a RoI with a smaller grid than the largest) carry weight 0 but may point
    # past the window: keep their indices inside it
    weights.scatter_add_(2, (low - origin).clamp(0, width - 1).long(), (1 - frac) * scale)
    weights.scatter_add_(2, (high - origin).clamp(0, width - 1).long(), frac * scale)
    return weights, first.long(), span


def roi_align(features, rois, output_size, spatial_scale=1.0, sampling_ratio=0, aligned=True):
    """Average RoIAlign of ``features`` (N, C, H, W) over ``rois`` (K, 5: batch index, x1, y1,
    x2, y2) with mmcv's semantics; returns (K, C, out_h, out_w) in channels-last layout."""
    out_h, out_w = output_size
    _, channels, height, width = features.shape
    if rois.numel() == 0:
        return features.new_zeros(0, channels, out_h, out_w)
    boxes = rois[:, 1:].detach().to(features.dtype) * spatial_scale  # mmcv: no grad to rois
    offset = 0.5 if aligned else 0.0
    x1, y1 = boxes[:, 0] - offset, boxes[:, 1] - offset
    roi_w, roi_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    if not aligned:  # mmcv's legacy mode gives every RoI at least one pixel
        roi_w, roi_h = roi_w.clamp(min=1), roi_h.clamp(min=1)
    wy, y0, ly = _axis_weights(y1, roi_h, height, out_h, sampling_ratio)
    wx, x0, lx = _axis_weights(x1, roi_w, width, out_w, sampling_ratio)
    hwc = features.permute(0, 2, 3, 1)  # a view when features are channels-last
    if not hwc.is_contiguous():
        hwc = hwc.contiguous()  # once, not a strided copy per RoI
    windows = list(zip(rois[:, 0].long().tolist(), y0.tolist(), ly.tolist(), x0.tolist(),
                       lx.tolist()))
    out = _WindowedMatmul.apply(hwc, wy, wx, windows)  # (K, out_h, out_w, C)
    return out.permute(0, 3, 1, 2)


class _WindowedMatmul(torch.autograd.Function):
    """``Wy @ crop @ Wx^T`` for every RoI's window of an (N, H, W, C) map; backward written out
    since autograd through per-RoI slices would zero-fill a map-sized gradient per RoI."""

    @staticmethod
    def forward(ctx, hwc, wy, wx, windows):
        ctx.save_for_backward(wy, wx)
        ctx.windows, ctx.shape = windows, hwc.shape
        outputs = []
        for k, (b, ya, yn, xa, xn) in enumerate(windows):
            crop = hwc[b, ya:ya + yn, xa:xa + xn]  # (rows, cols, C)
            cols = torch.matmul(wx[k, :, :xn], crop)  # (rows, out_w, C)
            outputs.append(torch.mm(wy[k, :, :yn], cols.reshape(yn, -1)))
        return torch.stack(outputs).view(len(outputs), wy.shape[1], wx.shape[1], hwc.shape[3])

    @staticmethod
    def backward(ctx, grad_out):
        wy, wx = ctx.saved_tensors
        grad = grad_out.new_zeros(ctx.shape)
        _, out_h, out_w, channels = grad_out.shape
        for k, (b, ya, yn, xa, xn) in enumerate(ctx.windows):
            cols = torch.mm(wy[k, :, :yn].t(), grad_out[k].reshape(out_h, -1))
            grad[b, ya:ya + yn, xa:xa + xn] += torch.matmul(
                wx[k, :, :xn].t(), cols.view(yn, out_w, channels))
        return grad, None, None, None


class SeparableRoIAlign(nn.Module):
    """Drop-in for ``mmcv.ops.RoIAlign`` with ``pool_mode='avg'`` (what mmdet's RoI
    extractors use): same arguments, same outputs, faster on CPU."""

    def __init__(self, output_size, spatial_scale=1.0, sampling_ratio=0, aligned=True):
        super().__init__()
        self.output_size = (output_size, ) * 2 if isinstance(output_size, int) else tuple(
            output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = aligned

    @classmethod
    def from_mmcv(cls, layer):
        if layer.pool_mode != 'avg':
            raise ValueError(f'SeparableRoIAlign computes pool_mode="avg", not '
                             f'{layer.pool_mode!r}')
        return cls(layer.output_size, layer.spatial_scale, layer.sampling_ratio, layer.aligned)

    def forward(self, features, rois):
        return roi_align(features, rois, self.output_size, self.spatial_scale,
                         self.sampling_ratio, self.aligned)

    def extra_repr(self):
        return (f'output_size={self.output_size}, spatial_scale={self.spatial_scale}, '
                f'sampling_ratio={self.sampling_ratio}, aligned={self.aligned}')
