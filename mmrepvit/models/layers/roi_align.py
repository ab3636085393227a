"""RoIAlign (average pooling) as two small matrix products per RoI, faster on CPU than mmcv's
single-threaded one (docs/speed.md): bilinear sampling and the average over a bin are separable,
so each RoI's output is ``Wy @ crop @ Wx^T``, ``Wy`` / ``Wx`` (bins x rows / cols) holding the
interpolation weights over the feature rows / columns the RoI touches. Same function as mmcv's
(boundary rules included), float rounding aside; differentiable in the features, not the boxes.
"""
import torch
import torch.nn as nn


def tent(offset: torch.Tensor) -> torch.Tensor:
    """Linear interpolation's weight of a grid point ``offset`` away from the sample point:
    1 - |offset|, 0 from 1 on (what bilinear sampling gives its two neighbours, written in
    arithmetic that XNNPACK runs, not comparisons)."""
    return (1 - offset.abs()).clamp(min=0)


def axis_weights(start, size, length, bins: int, sampling_ratio: int, grid: int, window: int):
    """Along one axis, per RoI (``start``, ``size`` in feature pixels; ``length``: the map's
    length there, per RoI): mmcv's RoIAlign bilinear sample weights (K, bins, window) over
    ``window`` map rows (or columns) ``index`` (K, window), summed per bin and divided by its
    sample count (at most ``grid``). The rows start at the first the RoI touches, one apart
    (exact while the RoI touches at most ``window`` rows), else spread evenly over it (an
    approximation). Fixed sizes, plain arithmetic: an exported program computes it too."""
    bin_size = size / bins
    count = torch.full_like(size, sampling_ratio) if sampling_ratio > 0 else bin_size.ceil()
    count = count.clamp(max=grid)[:, None, None]
    step = torch.arange(grid, dtype=size.dtype, device=size.device)
    bin_size = bin_size[:, None, None]
    pos = (start[:, None, None]  # mmcv's order of operations
           + torch.arange(bins, dtype=size.dtype, device=size.device)[:, None] * bin_size
           + (step + 0.5) * bin_size / count.clamp(min=1))
    used = (step < count) & (pos >= -1) & (pos <= length[:, None, None])
    first = start.clamp(min=0).floor().minimum(length - 1)
    last = (start + size).clamp(min=0).floor().add(1).minimum(length - 1)
    stride = ((last - first + 1) / window).ceil().clamp(min=1)
    # lattice rows first + stride * t; a sample at or past the map's last row takes it alone
    # (mmcv's rule), so no weight falls past it
    end = ((length - 1 - first) / stride).clamp(max=window - 1)
    u = ((pos.clamp(min=0) - first[:, None, None]) / stride[:, None, None]).minimum(
        end[:, None, None])
    scale = used.to(size.dtype) / count.clamp(min=1)
    lattice = torch.arange(window, dtype=size.dtype, device=size.device)
    weights = (tent(u[..., None] - lattice) * scale[..., None]).sum(2)
    index = (first[:, None] + stride[:, None] * lattice).minimum(length[:, None] - 1)
    return weights, index.long()


def _window_weights(start, size, length: int, bins: int, sampling_ratio: int):
    """``axis_weights`` with each RoI's own sample count and a window as long as the most
    rows a RoI touches (exact): the weights (K, bins, L), each window's first row (K,) and
    its length (K,)."""
    count = torch.full_like(size, sampling_ratio) if sampling_ratio > 0 else (size / bins).ceil()
    first = start.clamp(min=0).floor().clamp(max=length - 1)
    last = (start + size).clamp(min=0).floor().add(1).clamp(max=length - 1)
    span = (last - first + 1).long()
    grid = max(int(count.max().item()), 1) if count.numel() else 1
    window = int(span.max().item()) if span.numel() else 1
    weights, _ = axis_weights(start, size, torch.full_like(start, length), bins,
                              sampling_ratio, grid, window)
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
    wy, y0, ly = _window_weights(y1, roi_h, height, out_h, sampling_ratio)
    wx, x0, lx = _window_weights(x1, roi_w, width, out_w, sampling_ratio)
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
