"""A segmentor's post-processing without its full-size logit maps: the classes of mmseg's
(resize to the padded input, padding crop, resize to the original image, argmax) from the
decode head's low-resolution logits, tile by tile (``resize_argmax``), or in the fixed shapes
of an ExecuTorch program (``upscale_argmax``); bilinear resizing is one matrix per axis
(``resize_matrix``). docs/deployment.md explains both.
"""
from typing import Optional, Sequence, Tuple

import torch

ROWS_PER_TILE = 16


def resize_matrix(n_in: int, n_out: int, align_corners: bool = False) -> torch.Tensor:
    """(n_out, n_in) float64 weights of 1-D linear resizing as ``F.interpolate(mode=
    'bilinear', size=...)`` computes it along one axis."""
    out = torch.arange(n_out, dtype=torch.float64)
    if align_corners:
        src = out * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        src = ((out + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = src - lo
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    m[torch.arange(n_out), lo] += 1 - frac
    m[torch.arange(n_out), hi] += frac
    return m


def composed_matrix(n_low: int, n_pad: int, start: int, n_img: int, n_ori: int,
                    align_corners: bool = False) -> torch.Tensor:
    """(n_ori, n_low): resize ``n_low`` -> ``n_pad`` (the graph), keep ``start:start+n_img``
    (mmseg's padding crop), resize -> ``n_ori`` (mmseg's resize to the original image)."""
    first = resize_matrix(n_low, n_pad, align_corners)[start:start + n_img]
    return resize_matrix(n_img, n_ori, align_corners) @ first


def _taps(matrix: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Each row's non-zero columns as (indices, weights), (n_out, K) each, K the most per row."""
    k = int((matrix != 0).sum(1).max())
    weights, index = matrix.abs().topk(k, dim=1)
    return index, matrix.gather(1, index).float()


def resize_argmax(low: torch.Tensor, pad_shape: Sequence[int], padding: Sequence[int],
                  ori_shape: Sequence[int], align_corners: bool = False,
                  rows_per_tile: int = ROWS_PER_TILE) -> torch.Tensor:
    """Classes (H, W) int64 of ``low`` (K, h, w) logits as mmseg predicts them: resized to
    ``pad_shape``, ``padding`` (left, right, top, bottom) cropped, resized to ``ori_shape``,
    argmax over K."""
    k, h, w = low.shape
    left, right, top, bottom = (int(p) for p in padding)
    pad_h, pad_w = int(pad_shape[0]), int(pad_shape[1])
    ori_h, ori_w = int(ori_shape[0]), int(ori_shape[1])
    rows = composed_matrix(h, pad_h, top, pad_h - top - bottom, ori_h, align_corners).float()
    col_index, col_weights = _taps(composed_matrix(w, pad_w, left, pad_w - left - right, ori_w,
                                                   align_corners))
    col_weights = col_weights[..., None]  # (ori_w, taps, 1)
    # classes last: every step reads whole contiguous rows of K logits, and the argmax
    # reduces over the innermost axis
    low = low.float().permute(1, 2, 0).contiguous()  # (h, w, K)
    bands = []
    for r0 in range(0, ori_h, rows_per_tile):
        a = rows[r0:r0 + rows_per_tile]
        used = a.abs().sum(0).nonzero().flatten()
        bands.append((r0, a, int(used.min()), int(used.max()) + 1))
    most = max(hi - lo for _, _, lo, hi in bands)
    # buffers reused by every tile: a fresh large tensor costs its page faults on every call,
    # which is what makes materialising K full-size maps slow
    wide = low.new_empty(most, ori_w, k)
    gathered = low.new_empty(most, ori_w, k)
    tile = low.new_empty(rows_per_tile, ori_w * k)
    classes = torch.empty(ori_h, ori_w, dtype=torch.long)
    for r0, a, lo, hi in bands:
        r, t = hi - lo, len(a)
        # the low rows this tile reads, resized along the width: (r, ori_w, K)
        torch.index_select(low[lo:hi], 1, col_index[:, 0], out=wide[:r]).mul_(col_weights[:, 0])
        for j in range(1, col_index.shape[1]):
            torch.index_select(low[lo:hi], 1, col_index[:, j], out=gathered[:r])
            wide[:r].addcmul_(gathered[:r], col_weights[:, j])
        # then along the height: (t, r) @ (r, ori_w * K), reduced to classes at once
        torch.matmul(a[:, lo:hi], wide[:r].view(r, -1), out=tile[:t])
        torch.argmax(tile[:t].view(t, ori_w, k), -1, out=classes[r0:r0 + t])
    return classes


EXACT_CELLS = 1 / 16  # the share of cells computed over all classes, and at least:
EXACT_CELLS_AT_LEAST = 256


def upscale_argmax(low: torch.Tensor, factor: int, exact_cells: float = EXACT_CELLS
                   ) -> torch.Tensor:
    """Classes (factor * h, factor * w) of ``low`` (h, w, K) logits resized by a whole
    ``factor`` (bilinear, half-pixel) and reduced by argmax, in fixed shapes for a program.

    A pixel's class is the best of its cell's four low pixels' best classes wherever that
    beats the same mix of their second-best logits (then exact); the other cells (class
    boundaries), up to ``exact_cells`` of them, are computed over all K classes."""
    h, w, k = low.shape
    n = (h + 1) * (w + 1)
    # cell (i, j) lies between low rows i - 1, i and columns j - 1, j, clamped to the map as
    # the resize clamps: the edge cells repeat the edge pixels
    row, col = torch.arange(h + 1), torch.arange(w + 1)
    rows = torch.stack([(row - 1).clamp(min=0), row.clamp(max=h - 1)], 1)  # (h + 1, 2)
    cols = torch.stack([(col - 1).clamp(min=0), col.clamp(max=w - 1)], 1)
    pixel = (rows[:, None, :, None] * w + cols[None, :, None, :]).reshape(n, 4)

    def at(values, index):  # values.flatten()[index] as a gather along one axis
        return values.reshape(-1).index_select(0, index.reshape(-1)).reshape(index.shape)

    first = low.argmax(-1, keepdim=True)
    second = at(low.scatter(-1, first, float('-inf')).amax(-1), pixel)  # (n, 4)
    top = at(first, pixel)  # (n, 4): each corner's best class
    mix = cell_mix(factor).to(low.dtype)  # (factor^2, 4)
    scores = torch.bmm(mix.expand(n, -1, -1), at(low, pixel[:, :, None] * k + top[:, None]))
    classes = top.gather(1, scores.argmax(-1))  # (n, factor^2)
    unsure = (scores.amax(-1) <= second @ mix.T).any(1)
    # the unsure cells' indices packed into `count` slots (index n: a slot left unused)
    count = min(n, max(EXACT_CELLS_AT_LEAST, int(n * exact_cells)))
    slot = torch.where(unsure, unsure.long().cumsum(0) - 1, count).clamp(max=count)
    cells = torch.full((count + 1, ), n, dtype=torch.long).index_put((slot, ), torch.arange(n))
    cells = cells[:count]
    corners = torch.cat([pixel, pixel[:1]]).index_select(0, cells).reshape(-1)
    exact = low.reshape(-1, k).index_select(0, corners).reshape(count, 4, k)
    exact = torch.bmm(mix.expand(count, -1, -1), exact).argmax(-1)
    classes = torch.cat([classes, classes[:1]]).index_put((cells, ), exact)[:n]
    classes = classes.reshape(h + 1, w + 1, factor, factor).permute(0, 2, 1, 3)
    start = factor - factor // 2  # the first output pixel of cell 1
    return classes.reshape((h + 1) * factor, (w + 1) * factor)[
        start:start + h * factor, start:start + w * factor]


def cell_mix(factor: int) -> torch.Tensor:
    """(factor^2, 4): the weights of a cell's four corners (top-left, top-right, bottom-left,
    bottom-right) at each of its output pixels, row-major: per axis the rows of
    ``resize_matrix(2, 2 * factor)`` between its two inputs (from ``factor // 2`` on)."""
    axis = resize_matrix(2, 2 * factor)[factor // 2:factor // 2 + factor]  # (factor, 2)
    return (axis[:, None, :, None] * axis[None, :, None, :]).reshape(factor * factor, 4).float()


def cut_final_resize_onnx(model) -> Optional[str]:
    """Make the ONNX segmentor graph (``model``, in place) end before its final ``Resize``:
    output ``logits`` becomes the decode head's low-resolution logits. Returns the removed
    Resize's coordinate mode, or None (graph left as it is) if it does not end in one."""
    graph = model.graph
    if len(graph.output) != 1:
        return None
    producer = {o: n for n in graph.node for o in n.output}
    node = producer.get(graph.output[0].name)
    if node is None or node.op_type != 'Resize':
        return None
    mode = next((a.s.decode() for a in node.attribute
                 if a.name == 'coordinate_transformation_mode'), 'half_pixel')
    source = node.input[0]
    keep, stack = set(), [source]
    while stack:  # the nodes the new output still needs
        n = producer.get(stack.pop())
        if n is not None and id(n) not in keep:
            keep.add(id(n))
            stack.extend(i for i in n.input if i)
    nodes = [n for n in graph.node if id(n) in keep]
    del graph.node[:]
    graph.node.extend(nodes)
    for n in graph.node:  # the low-resolution tensor takes the graph output's name
        n.output[:] = [graph.output[0].name if o == source else o for o in n.output]
        n.input[:] = [graph.output[0].name if i == source else i for i in n.input]
    del graph.output[0].type.tensor_type.shape.dim[:]
    return mode


def cut_final_resize_openvino(model):
    """The OpenVINO counterpart of ``cut_final_resize_onnx``: (a new model whose one output is
    the input of the final ``Interpolate``, its coordinate mode), or (``model``, None) if the
    model does not end in one."""
    import openvino as ov
    if len(model.outputs) != 1:
        return model, None
    resize = model.output(0).get_node().input_value(0).get_node()
    if resize.get_type_name() != 'Interpolate':
        return model, None
    mode = resize.get_attributes().get('coordinate_transformation_mode', 'half_pixel')
    source = resize.input_value(0)
    source.get_tensor().set_names({model.output(0).get_any_name()})
    return ov.Model([source], model.get_parameters(), 'segmentor_low_resolution'), mode


def low_resolution_supported(mode: Optional[str], align_corners: bool) -> bool:
    """Whether ``resize_argmax`` computes what the removed Resize did."""
    expected = ('align_corners', ) if align_corners else ('half_pixel', 'pytorch_half_pixel')
    return mode in expected

