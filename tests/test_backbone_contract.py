"""The contract every backbone here keeps (``MobileBackbone``), checked on each of them:
gradient checkpointing, frozen norm statistics and stages, and the two forms of the weights
(plain and fused) with a load hook that makes backbone and weights the same form."""
import copy

import pytest
import torch
from conftest import randomise_bn
from torch.nn.modules.batchnorm import _BatchNorm

from mmrepvit.errors import CheckpointMismatchError
from mmrepvit.models import MoCoViT, RepViT

BACKBONES = {'repvit': lambda **kw: RepViT('m0_6', **kw),
             'mocovit': lambda **kw: MoCoViT('0.5x', **kw)}


@pytest.fixture(params=list(BACKBONES))
def build(request):
    return BACKBONES[request.param]


def outputs(model, x):
    with torch.no_grad():
        return model.eval()(x)


def count_norms(model):
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


def test_with_cp_same_outputs_and_gradients(build):
    torch.manual_seed(0)
    plain, ckpt = build().train(), build(with_cp=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    results = []
    for model in (plain, ckpt):
        xi = x.clone().requires_grad_(True)
        outs = model(xi)
        sum((o * o).mean() for o in outs).backward()
        results.append((outs, xi.grad, [p.grad for p in model.parameters()]))
    torch.testing.assert_close(results[0][:2], results[1][:2])
    torch.testing.assert_close(results[0][2], results[1][2])


def test_norm_eval_keeps_bn_statistics(build):
    x = torch.randn(2, 3, 64, 64)
    for norm_eval in (True, False):
        model = build(norm_eval=norm_eval).train()
        before = {k: v.clone() for k, v in model.state_dict().items() if 'running' in k}
        model(x)
        moved = [k for k, v in model.state_dict().items()
                 if 'running' in k and not torch.equal(v, before[k])]
        assert (not moved) if norm_eval else moved
        assert all(m.training != norm_eval for m in model.modules()
                   if isinstance(m, _BatchNorm))


@pytest.mark.parametrize('frozen_stages', [0, 2, 4])
def test_frozen_stages_freeze_exactly_their_modules(build, frozen_stages):
    model = build(frozen_stages=frozen_stages).train()
    frozen = {id(p) for m in model.frozen_modules() for p in m.parameters()}
    assert {id(p) for p in model.stem.parameters()} <= frozen
    for p in model.parameters():
        assert p.requires_grad == (id(p) not in frozen)
    for m in model.frozen_modules():
        assert all(not n.training for n in m.modules() if isinstance(n, _BatchNorm))
    model.switch_to_deploy()  # the fused modules stay frozen
    frozen = {id(p) for m in model.frozen_modules() for p in m.parameters()}
    assert frozen and all(p.requires_grad == (id(p) not in frozen) for p in model.parameters())


@pytest.mark.parametrize('kwargs, words', [
    (dict(out_indices=(0, 4)), ['out_indices=(0, 4)', '[4]', 'strides 4, 8, 16, 32']),
    (dict(out_indices=()), ['empty']),
    (dict(frozen_stages=5), ['frozen_stages=5', '-1', 'stem']),
])
def test_bad_contract_arguments_name_value_and_valid_ones(build, kwargs, words):
    with pytest.raises(ValueError) as info:
        build(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_switch_to_deploy_keeps_outputs_and_is_idempotent(build):
    model = randomise_bn(build())
    x = torch.randn(1, 3, 64, 96)
    ref = outputs(model, x)
    model.switch_to_deploy()
    once = outputs(model, x)
    keys = list(model.state_dict())
    model.switch_to_deploy()
    assert count_norms(model) == 0 and list(model.state_dict()) == keys
    torch.testing.assert_close(once, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(outputs(model, x), once)


def test_deploy_true_builds_the_fused_structure_directly(build):
    fused = build()
    fused.switch_to_deploy()
    direct = build(deploy=True)
    assert direct.deploy and count_norms(direct) == 0
    assert {k: v.shape for k, v in direct.state_dict().items()} == \
        {k: v.shape for k, v in fused.state_dict().items()}
    assert all(torch.isfinite(p).all() for p in direct.parameters())  # initialised, not empty
    assert not any(p.is_meta for p in direct.parameters())


def test_load_hook_makes_backbone_and_weights_the_same_form(build):
    trained = randomise_bn(build())
    x = torch.randn(1, 3, 64, 64)
    ref = outputs(trained, x)
    fused_weights = copy.deepcopy(trained).eval()
    fused_weights.switch_to_deploy()
    # fused weights into a plain backbone: it switches to its fused form first
    plain = build()
    plain.load_state_dict(fused_weights.state_dict(), strict=True)
    assert plain.deploy
    torch.testing.assert_close(outputs(plain, x), ref, rtol=1e-4, atol=1e-4)
    # plain weights into a fused backbone: they are fused as they load
    deployed = build(deploy=True)
    deployed.load_state_dict(trained.state_dict(), strict=True)
    torch.testing.assert_close(outputs(deployed, x), ref, rtol=1e-4, atol=1e-4)
    # under a prefix, inside a bigger model, with a non-strict loader (as mmengine's)
    parent = torch.nn.Module()
    parent.backbone = build()
    from mmengine.runner.checkpoint import load_state_dict
    load_state_dict(parent, {f'backbone.{k}': v for k, v in
                             fused_weights.state_dict().items()}, strict=False)
    assert parent.backbone.deploy
    torch.testing.assert_close(outputs(parent.backbone, x), ref, rtol=1e-4, atol=1e-4)


def test_load_hook_refuses_weights_of_neither_form(build):
    weights = build().state_dict()
    cut = dict(list(weights.items())[:len(weights) // 2])
    model = build()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(CheckpointMismatchError) as info:
        model.load_state_dict(cut, strict=False)  # even a non-strict load
    message = str(info.value)
    assert 'in its plain or its fused form; nothing was loaded' in message
    assert 'keys missing from the checkpoint' in message
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
