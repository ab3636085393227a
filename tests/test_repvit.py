import json
import re

import pytest
import torch
from conftest import DATA, randomise_bn
from torch.nn.modules.batchnorm import _BatchNorm

from mmrepvit.analysis import RepViTClassifier
from mmrepvit.checkpoint import convert_official, extract_backbone_weights, load_backbone_weights
from mmrepvit.models import RepViT
from mmrepvit.models.backbones.repvit import ARCH_ZOO, default_se_pattern

ARCHS = json.loads((DATA / 'repvit_archs.json').read_text())


def run_rows(model, x):
    """Outputs after the stem and after every row, like the original's ``features``."""
    outs = [model.stem(x)]
    for block in model.blocks:
        outs.append(block(outs[-1]))
    return outs


def table_rows(model):
    """(channels, SE, stride) per row, the columns of the original's ``cfgs`` we encode."""
    return [(c, int(se), 2 if stage > 0 and i == 0 else 1)
            for stage, (c, pat) in enumerate(zip(model.channels, model.se_pattern))
            for i, se in enumerate(pat)]


def test_golden_per_block_outputs(golden):
    model = RepViT(golden['arch']).eval()
    assert table_rows(model) == [(r[2], r[3], r[5]) for r in golden['cfgs']]
    model.load_state_dict(convert_official(golden['state_dict']), strict=True)
    with torch.no_grad():
        outs = run_rows(model, golden['input'])
        assert len(outs) == len(golden['features'])
        for i, (ours, ref) in enumerate(zip(outs, golden['features'])):
            assert (ours - ref).abs().max() <= 1e-5, f'row {i}'
        model.switch_to_deploy()
        for i, (ours, ref) in enumerate(zip(run_rows(model, golden['input']),
                                            golden['features'])):
            assert (ours - ref).abs().max() <= 1e-4, f'fused row {i}'
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())


def official_head(state_dict):
    """The original's distilled head (``classifier.classifier{,_dist}.{bn,l}.*``) in
    ``DistilledHead``'s names: the project's loader reads backbones and drops heads."""
    out = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r'classifier\.classifier(_dist)?\.(bn|l)\.(.+)', key)
        if m:
            head, part = 'dist_head' if m[1] else 'head', 'fc' if m[2] == 'l' else 'bn'
            out[f'{head}.{part}.{m[3]}'] = value
    return out


def test_golden_logits_unfused_and_fused(golden):
    """Backbone, pooling and head end to end; fused against the original's own fusing."""
    model = RepViTClassifier(golden['arch'], num_classes=golden['logits'].shape[1]).eval()
    weights = extract_backbone_weights({'model': golden['state_dict']})
    assert load_backbone_weights(model.backbone, weights).layout == golden['layout']
    model.classifier.load_state_dict(official_head(golden['state_dict']), strict=True)
    with torch.no_grad():
        assert (model(golden['input']) - golden['logits']).abs().max() <= 1e-5
        model.switch_to_deploy()
        assert (model(golden['input']) - golden['fused_logits']).abs().max() <= 1e-5
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())


@pytest.mark.parametrize('arch', list(ARCH_ZOO))
def test_arch_table_and_param_count(arch):
    ref = ARCHS[f'repvit_{arch}']
    rows = ref['rows_k_t_c_se_hs_s']
    model = RepViT(arch)
    assert table_rows(model) == [(r[2], r[3], r[5]) for r in rows]
    assert model.legacy == ref['legacy']
    assert sum(p.numel() for p in model.parameters()) == ref['params_backbone_unfused']


def test_default_se_rule_reproduces_published_tables():
    for name, arch in ARCH_ZOO.items():
        if name == 'm0_6':  # its two-row last stage keeps SE on the last row
            continue
        for stage, pattern in enumerate(arch['se']):
            assert default_se_pattern(len(pattern), stage == 0) == pattern, (name, stage)


@pytest.mark.parametrize('arch', list(ARCH_ZOO))
def test_fused_matches_unfused_odd_size(arch):
    torch.manual_seed(0)
    model = randomise_bn(RepViT(arch, out_indices=(0, 1, 2, 3))).eval()
    x = torch.randn(1, 3, 333, 517)
    with torch.no_grad():
        ref = model(x)
        model.switch_to_deploy()
        fused = model(x)
    expected = [((333 + s - 1) // s, (517 + s - 1) // s) for s in (4, 8, 16, 32)]
    assert [tuple(f.shape[-2:]) for f in ref] == expected
    assert [f.shape[1] for f in ref] == list(model.channels)
    for a, b in zip(ref, fused):
        assert a.shape == b.shape
        assert (a - b).abs().max() / max(1.0, a.abs().max()) < 1e-4


def test_taps_conventions():
    model = randomise_bn(RepViT('m1_1', taps='detection')).eval()
    assert model.tap_rows == (2, 6, 20, 24)
    assert RepViT('m1_1').tap_rows == (3, 7, 21, 24)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        rows = run_rows(model, x)
        outs = model(x)
    for out, row in zip(outs, model.tap_rows):
        torch.testing.assert_close(out, rows[row])


def test_out_indices_subset_and_metadata():
    model = RepViT('m0_9', out_indices=(1, 3))
    assert model.out_channels == [96, 384] and model.out_strides == [8, 32]
    outs = model(torch.randn(2, 3, 64, 64))
    assert [o.shape for o in outs] == [(2, 96, 8, 8), (2, 384, 2, 2)]


@pytest.mark.parametrize('frozen_stages', [0, 2])
def test_frozen_stages(frozen_stages):
    model = RepViT('m0_6', frozen_stages=frozen_stages).train()
    frozen_rows = {r for s in range(frozen_stages) for r in model.stage_rows(s)}
    assert all(not p.requires_grad for p in model.stem.parameters())
    assert not model.stem[0].bn.training
    for row, block in enumerate(model.blocks, start=1):
        grads = {p.requires_grad for p in block.parameters()}
        assert grads == ({False} if row in frozen_rows else {True}), row
    before = {k: v.clone() for k, v in model.stem.state_dict().items()}
    model(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(v, model.stem.state_dict()[k]) for k, v in before.items())


def test_drop_path_rate_is_stochastic_in_training_only():
    # non-zero last norms, else every FFN branch starts at zero and dropping it changes nothing
    model = randomise_bn(RepViT('m0_6', drop_path_rate=0.5))
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x)[-1], model(x)[-1])
    model.train()
    torch.manual_seed(0)
    a = model(x)[-1]
    torch.manual_seed(1)
    assert not torch.allclose(a, model(x)[-1])


def test_syncbn_norm_cfg_builds_and_fuses():
    model = RepViT('m0_6', norm_cfg=dict(type='SyncBN', requires_grad=True))
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    model.switch_to_deploy()
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())


def test_custom_arch():
    model = RepViT(dict(channels=(16, 32, 64, 128), depths=(2, 2, 3, 2)))
    assert model.se_pattern == ('10', '00', '010', '00') and model.arch_name == 'custom'
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16, 32, 64, 128]


@pytest.mark.parametrize('kwargs, words', [
    (dict(arch='m9_9'), ["'m9_9'", 'm1_1', 'm0_6', 'm3']),
    (dict(out_indices=(0, 4)), ['4', '0-3']),
    (dict(out_indices=(-1, )), ['-1', '0-3']),
    (dict(frozen_stages=5), ['5', '-1']),
    (dict(taps='neck'), ["'neck'", 'segmentation', 'detection']),
    (dict(arch=dict(channels=(8, 16))), ['channels']),
])
def test_bad_arguments_name_value_and_valid_ones(kwargs, words):
    with pytest.raises((ValueError, KeyError)) as info:
        RepViT(**kwargs)
    for word in words:
        assert word in str(info.value)
