"""SeparableRoIAlign against mmcv's RoIAlign: values and gradients, boundary rules included."""
import pytest
import torch
from mmcv.ops import RoIAlign

from mmrepvit.models.layers import SeparableRoIAlign


def random_rois(num, height, width, scale, seed=0):
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([width, height]) / scale
    corner = torch.rand(num, 2, generator=g) * size * 1.2 - 0.1 * size  # some outside the map
    extent = torch.rand(num, 2, generator=g) ** 2 * size * 0.8
    extent[:5] = 0  # empty
    extent[5:10] = 0.3  # below one feature pixel
    batch = torch.randint(0, 2, (num, 1), generator=g).float()
    return torch.cat([batch, corner, corner + extent], 1)


@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('sampling_ratio', [0, 2])
@pytest.mark.parametrize('output_size', [(7, 7), (14, 14), (3, 5)])
@pytest.mark.parametrize('channels_last', [False, True])
def test_matches_mmcv_values_and_gradients(aligned, sampling_ratio, output_size, channels_last):
    torch.manual_seed(0)
    scale = 0.25
    feats = torch.randn(2, 8, 29, 41)
    if channels_last:
        feats = feats.contiguous(memory_format=torch.channels_last)
    rois = random_rois(120, 29, 41, scale)
    ours = SeparableRoIAlign(output_size, scale, sampling_ratio, aligned)
    ref = RoIAlign(output_size, scale, sampling_ratio, aligned=aligned)
    a = feats.detach().contiguous().requires_grad_()
    b = feats.detach().clone().requires_grad_()
    expected, got = ref(a, rois), ours(b, rois)
    assert got.shape == expected.shape == (120, 8) + output_size
    assert expected.abs().max() > 1  # the RoIs do see the map
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    upstream = torch.randn_like(expected)
    (expected * upstream).sum().backward()
    (got * upstream).sum().backward()
    # a gradient sums many RoIs' contributions, in another order than mmcv's
    torch.testing.assert_close(b.grad, a.grad, atol=1e-4, rtol=1e-4)


def test_rois_with_different_sample_grids_side_by_side():
    """Pairs of RoIs whose adaptive sample grids differ (a short padded grid beside a long one):
    every pair as one call, as mmdet's extractors batch them."""
    feats = torch.randn(1, 4, 24, 24)
    g = torch.Generator().manual_seed(1)
    ours, ref = SeparableRoIAlign(7, 1.0), RoIAlign(7, 1.0)
    for _ in range(200):
        corner = torch.rand(2, 2, generator=g) * 10
        extent = torch.rand(2, 2, generator=g) * torch.tensor([[14.], [30.]])
        rois = torch.cat([torch.zeros(2, 1), corner, corner + extent], 1)
        torch.testing.assert_close(ours(feats, rois), ref(feats, rois), atol=1e-5, rtol=1e-5)


def test_no_rois_and_max_pooling():
    out = SeparableRoIAlign(7, 0.5)(torch.randn(1, 4, 10, 10), torch.zeros(0, 5))
    assert out.shape == (0, 4, 7, 7)
    with pytest.raises(ValueError, match='pool_mode="avg", not \'max\''):
        SeparableRoIAlign.from_mmcv(RoIAlign(7, 0.5, pool_mode='max'))
