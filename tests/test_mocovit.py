"""MoCoViT: size against the paper, MoSA's global token mixing, backbone options, configs."""
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from conftest import randomise_bn
from mmengine.analysis import FlopAnalyzer, get_model_complexity_info
from mmengine.registry import DefaultScope
from model_steps import train_and_test_step
from tiny_runs import make_data
from torch.nn.modules.batchnorm import _BatchNorm

from mmrepvit.apis import load_config, prepare_test_cfg, prepare_train_cfg, train
from mmrepvit.apis import test as run_test
from mmrepvit.checkpoint.backbone_weights import shapes_of
from mmrepvit.models import GhostNet, GhostNetClassifier, MoCoViT, MoCoViTClassifier
from mmrepvit.models.layers import (
    GhostBottleneck,
    GhostModule,
    MobileSelfAttention,
    MobileTransformerBlock,
    TokenAttention,
)

CONFIGS = Path(__file__).resolve().parents[1] / 'configs'


def complexity(model):
    return get_model_complexity_info(model.eval(), input_shape=(3, 224, 224), show_table=False,
                                     show_arch=False)


@pytest.fixture(scope='module')
def sizes():
    return {'mocovit': complexity(MoCoViTClassifier('1.0x')),
            'ghostnet': complexity(GhostNetClassifier('1.0x'))}


# ---------------------------------------------------------------- size against the paper

def test_params_1_0x_match_paper(sizes):
    params = sum(p.numel() for p in MoCoViTClassifier('1.0x').parameters())
    assert params == sizes['mocovit']['params']
    assert abs(params / 5.3e6 - 1) <= 0.03, params


def test_macs_ratio_to_ghostnet_matches_paper(sizes):
    ratio = sizes['mocovit']['flops'] / sizes['ghostnet']['flops']
    assert abs(ratio / (147 / 141) - 1) <= 0.03, (sizes['mocovit']['flops'],
                                                  sizes['ghostnet']['flops'])


def test_ghostnet_1_0x_matches_its_paper(sizes):
    """``GhostNet('1.0x')`` is the published GhostNet-1.0x: 5.2M params, 141M MACs in conv
    and FC layers (the tool adds BN and pooling on top); MoCoViT's stages without MTBs."""
    assert abs(sizes['ghostnet']['params'] / 5.2e6 - 1) <= 0.01
    model = GhostNetClassifier('1.0x').eval()
    assert not any(isinstance(m, MobileTransformerBlock) for m in model.modules())
    same = MoCoViT(dict(widen_factor=1.0, transformer_blocks=0))
    assert shapes_of(same.state_dict()) == shapes_of(model.backbone.state_dict())
    ops = FlopAnalyzer(model, torch.randn(1, 3, 224, 224)).by_operator()
    assert abs((ops['conv'] + ops['linear']) / 141e6 - 1) <= 0.01


def test_flop_counter_sees_the_attention_matmuls():
    model = MoCoViTClassifier('1.0x').eval()
    ops = FlopAnalyzer(model, torch.randn(1, 3, 224, 224)).by_operator()
    tokens, channels = 7 * 7, 160
    assert ops['matmul'] == 4 * 2 * tokens * tokens * channels  # 4 MTBs, V V^T and A V


def test_half_width_lands_near_ghostnet_0_5x():
    model = MoCoViTClassifier('0.5x').eval()
    params = sum(p.numel() for p in model.parameters())
    assert abs(params / 2.6e6 - 1) <= 0.03, params
    ops = FlopAnalyzer(model, torch.randn(1, 3, 224, 224)).by_operator()
    assert abs((ops['conv'] + ops['linear']) / 44e6 - 1) <= 0.05


# ---------------------------------------------------------------- the transformer blocks

def test_mtbs_only_at_the_end_of_the_last_stage():
    model = MoCoViT('1.0x')
    for stage in list(model.stages)[:3] + [model.stem]:
        assert not any(isinstance(m, MobileTransformerBlock) for m in stage.modules())
    last = list(model.stages[3])
    assert isinstance(last[0], GhostBottleneck)
    assert all(isinstance(b, MobileTransformerBlock) for b in last[1:]) and len(last) == 5
    # SE in every other MoFFN, as in the GhostNet rows they replace
    assert [not isinstance(b.moffn.se, nn.Identity) for b in last[1:]] == \
        [False, True, False, True]


def test_mosa_shares_one_ghost_projection_for_q_k_v():
    mosa = randomise_bn(MobileSelfAttention(32)).eval()
    ghosts = [m for m in mosa.modules() if isinstance(m, GhostModule)]
    assert ghosts == [mosa.shared, mosa.proj]  # one projection in, one out
    x = torch.randn(2, 32, 5, 6)
    with torch.no_grad():
        v = mosa.shared(x)
        tokens = v.flatten(2).transpose(1, 2)  # (B, H*W, C)
        attn = torch.softmax(tokens @ tokens.transpose(1, 2) / 32 ** 0.5, dim=-1) @ tokens
        attn = attn.transpose(1, 2).reshape_as(v)
        torch.testing.assert_close(mosa(x), mosa.proj(attn + mosa.local(v)))


def test_scale_follows_the_head_width():
    assert TokenAttention(160).scale == pytest.approx(160 ** -0.5)
    assert TokenAttention(160, num_heads=4).scale == pytest.approx(40 ** -0.5)
    with pytest.raises(ValueError, match=r'num_heads=3 .* 160'):
        TokenAttention(160, num_heads=3)


@pytest.mark.parametrize('num_heads', [1, 4])
def test_attention_is_permutation_equivariant_over_tokens(num_heads):
    attention = TokenAttention(32, num_heads)
    g = torch.Generator().manual_seed(0)
    v = torch.randn(2, 32, 6, 7, generator=g)
    perm = torch.randperm(6 * 7, generator=g)

    def permute(t):
        return t.flatten(2)[:, :, perm].reshape_as(t)

    torch.testing.assert_close(attention(permute(v)), permute(attention(v)))


def test_mosa_mixes_the_whole_image():
    """One changed pixel in a corner moves MoSA's output in the far corner; without the
    attention term (convs only) it does not, so the reach is the attention's."""
    torch.manual_seed(0)
    mosa = randomise_bn(MobileSelfAttention(16)).eval()
    x = torch.randn(1, 16, 14, 14)
    x2 = x.clone()
    x2[:, :, 0, 0] += 3.0
    with torch.no_grad():
        far = (mosa(x2) - mosa(x))[:, :, 10:, 10:].abs().amax()
        assert far > 1e-3
        mosa.attention.forward = torch.zeros_like
        assert (mosa(x2) - mosa(x))[:, :, 10:, 10:].abs().amax() == 0


def test_mtb_residuals_added_once():
    block = MobileTransformerBlock(16, 32)
    block.mosa.forward = torch.zeros_like
    block.moffn.forward = torch.zeros_like
    x = torch.randn(1, 16, 4, 4)
    torch.testing.assert_close(block(x), x)


# ---------------------------------------------------------------- backbone options

@pytest.mark.parametrize('arch, channels', [('1.0x', (24, 40, 112, 160)),
                                            ('0.5x', (12, 20, 56, 80))])
def test_four_stride_ends(arch, channels):
    model = MoCoViT(arch)
    assert model.channels == channels and model.out_strides == [4, 8, 16, 32]
    outs = model(torch.randn(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [
        (2, c, 64 // s, 96 // s) for c, s in zip(channels, (4, 8, 16, 32))]


def test_out_indices_subset_and_odd_size():
    model = MoCoViT('0.5x', out_indices=(1, 3)).eval()
    assert model.out_channels == [20, 80] and model.out_strides == [8, 32]
    outs = model(torch.randn(1, 3, 50, 70))
    assert [tuple(o.shape) for o in outs] == [(1, 20, 7, 9), (1, 80, 2, 3)]


@pytest.mark.parametrize('frozen_stages', [0, 2, 4])
def test_frozen_stages(frozen_stages):
    model = MoCoViT('0.5x', frozen_stages=frozen_stages).train()
    assert all(not p.requires_grad for p in model.stem.parameters())
    assert not model.stem[0].bn.training
    for i, stage in enumerate(model.stages):
        frozen = i < frozen_stages
        assert {p.requires_grad for p in stage.parameters()} == {not frozen}, i
        assert all(m.training != frozen for m in stage.modules()
                   if isinstance(m, _BatchNorm)), i


def test_pretrained_init_cfg_loads_backbone_weights(tmp_path):
    source = randomise_bn(MoCoViT('0.5x'))
    path = tmp_path / 'mocovit.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in source.state_dict().items()}},
               path)
    model = MoCoViT('0.5x', init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                          prefix='backbone.'))
    model.init_weights()
    for k, v in source.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


@pytest.mark.parametrize('kwargs, words', [
    (dict(arch='2.0x'), ["'2.0x'", '0.5x', '1.0x']),
    (dict(arch=dict(widen_factor=1.0, transformer_blocks=5)), ['5', '0', '4']),
    (dict(arch=dict(width=1.0)), ['widen_factor']),
    (dict(out_indices=(0, 4)), ['4', '0-3']),
    (dict(frozen_stages=5), ['5', '-1']),
    (dict(num_heads=7), ['num_heads=7', '160']),
])
def test_bad_arguments_name_value_and_valid_ones(kwargs, words):
    with pytest.raises((ValueError, KeyError)) as info:
        MoCoViT(**kwargs)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize('arch, words', [
    ('1.5x', ["Unknown GhostNet arch '1.5x'", '0.5x, 1.0x, 1.3x']),
    (dict(widen_factor=1.0, transformer_blocks=2), ['no transformer blocks', 'MoCoViT']),
])
def test_ghostnet_bad_arch_names_value_and_valid_ones(arch, words):
    with pytest.raises((ValueError, KeyError)) as info:
        GhostNet(arch)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
@pytest.mark.parametrize('type_name', ['MoCoViT', 'mmrepvit.MoCoViT', 'GhostNet',
                                       'mmrepvit.GhostNet'])
def test_builds_from_toolbox_scope(scope, type_name):
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(dict(type=type_name, arch='0.5x', out_indices=(3, )))
    assert type(model).__name__ == type_name.split('.')[-1] and model.out_channels == [80]
    assert model.transformer_blocks == (0 if 'GhostNet' in type_name else 4)


# ---------------------------------------------------------------- configs
# (model_steps: the shared tiny-input train/test-step helper of tests/test_configs.py)

@pytest.mark.parametrize('name, kind', [('retinanet_mocovit_1_0x_coco.py', 'det'),
                                        ('maskrcnn_mocovit_1_0x_coco.py', 'mask'),
                                        ('fpn_mocovit_1_0x_ade20k.py', 'seg')])
def test_config_builds_trains_and_tests_on_cpu(name, kind):
    cfg = load_config(str(CONFIGS / name))
    backbone = cfg.model.backbone
    assert backbone.type == 'mmrepvit.MoCoViT' and backbone.arch == '1.0x'
    assert backbone.init_cfg is None  # no public weights: trained from scratch
    assert not backbone.norm_eval  # so BN statistics are learnt
    assert list(cfg.model.neck.in_channels) == [24, 40, 112, 160]
    model, losses, preds = train_and_test_step(cfg)
    assert all(torch.isfinite(v).all() for v in losses.values()), losses
    assert isinstance(model.backbone, MoCoViT) and len(preds) == 2
    if kind == 'seg':
        assert preds[0].pred_sem_seg.data.shape == (1, 96, 128)
    else:
        assert 'bboxes' in preds[0].pred_instances
        if kind == 'mask':
            assert 'masks' in preds[0].pred_instances


GHOSTNET_DEMO = """
_base_ = {base!r}
data_root = {data_root!r}
metainfo = dict(classes=('circle', 'triangle', 'square', 'star'))
# one iteration from scratch: scores stay near the focal-loss prior (0.01), so keep them all
model = dict(bbox_head=dict(num_classes=4), test_cfg=dict(score_thr=0.0, max_per_img=20))
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='PackDetInputs'),
]
dataset = dict(data_root=data_root, metainfo=metainfo, pipeline=pipeline)
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(dataset, ann_file='annotations/instances_train2017.json',
                 data_prefix=dict(img='train2017/')))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(dataset, ann_file='annotations/instances_val2017.json',
                 data_prefix=dict(img='val2017/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=1, val_interval=2)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=1)]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=1), logger=dict(interval=1))
log_processor = dict(by_epoch=False)
"""


@pytest.mark.slow  # a training run and a test run: make test-slow
def test_ghostnet_retinanet_trains_and_tests_on_demo_data(tmp_path):
    """The baseline of MoCoViT's RetinaNet claim: GhostNet-1.0x in the same recipe; one
    training iteration and a test (COCO AP) on the built-in demo data, through the tools'
    library functions."""
    cfg = load_config(str(CONFIGS / 'retinanet_ghostnet_1_0x_coco.py'))
    mocovit = load_config(str(CONFIGS / 'retinanet_mocovit_1_0x_coco.py'))
    assert cfg.model.backbone.type == 'mmrepvit.GhostNet' and cfg.model.backbone.arch == '1.0x'
    assert {k: v for k, v in cfg.model.backbone.items() if k != 'type'} == \
        {k: v for k, v in mocovit.model.backbone.items() if k != 'type'}
    assert cfg.optim_wrapper == mocovit.optim_wrapper
    data = make_data(tmp_path / 'data')
    config = tmp_path / 'retinanet_ghostnet_demo.py'
    config.write_text(GHOSTNET_DEMO.format(base=str(CONFIGS / 'retinanet_ghostnet_1_0x_coco.py'),
                                           data_root=str(data / 'coco') + '/'))
    work_dir = tmp_path / 'work'
    runner = train(prepare_train_cfg(str(config), work_dir=str(work_dir)))
    assert isinstance(runner.model.backbone, GhostNet)
    metrics = run_test(prepare_test_cfg(str(config), str(work_dir / 'iter_1.pth'),
                                        work_dir=str(tmp_path / 'test')))
    assert 'coco/bbox_mAP' in metrics
