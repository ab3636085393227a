"""Loading RepViT checkpoints of every published layout: init_cfg, converter, errors."""
import gzip
import json
import logging
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from conftest import DATA, REPO
from mmengine.logging import HistoryBuffer, MMLogger
from mmengine.runner import load_checkpoint as mmengine_load_checkpoint

from mmrepvit.apis import convert_checkpoint
from mmrepvit.checkpoint import (
    CheckpointDownloadError,
    CheckpointFormatError,
    CheckpointMismatchError,
    convert_official,
    convert_timm,
    extract_backbone_weights,
    load_backbone_checkpoint,
    load_backbone_weights,
    load_checkpoint_file,
    load_model_checkpoint,
    timm_depths,
)
from mmrepvit.checkpoint.download import cache_path, record_path
from mmrepvit.models import MoCoViT, RepViT

with gzip.open(DATA / 'repvit_checkpoint_layouts.json.gz', 'rt') as f:
    LAYOUTS = json.load(f)
HEADS = ('classifier.', 'head.')
CASES = [(layout, variant) for layout, variants in LAYOUTS.items() for variant in variants]


@pytest.fixture
def log_messages():
    """Messages mmengine's current logger (``print_log(logger='current')``) receives."""
    logger = MMLogger.get_current_instance()
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)


def run_rows(model, x):
    """Output of the stem and of every row: the original's ``features`` list."""
    with torch.no_grad():
        outs = [model.stem(x)]
        for block in model.blocks:
            outs.append(block(outs[-1]))
    return outs


def assert_reproduces_golden(model, golden, atol=1e-5):
    outs = run_rows(model.eval(), golden['input'])
    assert len(outs) == len(golden['features'])
    for i, (ours, ref) in enumerate(zip(outs, golden['features'])):
        assert (ours - ref).abs().max() <= atol, f'features[{i}]'


def synthesise(shapes, fill='index'):
    """A state_dict with exactly these names and shapes. ``fill='index'``: every tensor holds
    its key's position, so where each tensor landed can be traced after loading."""
    out = {}
    for i, (key, shape) in enumerate(shapes.items()):
        if key.endswith('num_batches_tracked'):
            out[key] = torch.full(shape, i, dtype=torch.long)
        elif fill == 'index':
            out[key] = torch.full(shape, float(i))
        elif key.endswith('running_var'):
            out[key] = torch.rand(shape) + 0.5
        else:
            out[key] = torch.randn(shape) * 0.2
    return out


def save(tmp_path, name, obj):
    path = tmp_path / name
    torch.save(obj, path)
    return path


# ---- the tiny golden official-format checkpoints (current and legacy blocks) -------------------

def count_norms(model):
    return sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_golden_through_init_cfg(golden, tmp_path, log_messages):
    path = save(tmp_path, 'repvit_tiny_official.pth', {'model': golden['state_dict']})
    model = RepViT(golden['arch'], init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert_reproduces_golden(model, golden)
    log = '\n'.join(log_messages)
    assert f"recognised the {golden['layout']} layout under 'model'" in log
    assert 'dropped 14 classifier head keys' in log
    assert 'classifier.classifier_dist.l.weight' in log


def test_golden_through_converter_then_stock_mmengine_load(golden, tmp_path, tiny_zoo):
    src = save(tmp_path, 'official.pth', {'model': golden['state_dict']})
    meta = convert_checkpoint(src, tmp_path / 'out' / 'tiny.pth')  # arch found from weights
    assert meta['arch'] == golden['name'] and meta['source_layout'] == golden['layout']
    assert not meta['deploy']
    model = RepViT(golden['name'])
    mmengine_load_checkpoint(model, str(tmp_path / 'out' / 'tiny.pth'), strict=True)
    assert_reproduces_golden(model, golden)


def test_golden_fused_by_converter_into_deploy_backbone(golden, tmp_path, tiny_zoo):
    src = save(tmp_path, 'official.pth', {'model': golden['state_dict']})
    dst = tmp_path / 'tiny_deploy.pth'
    assert convert_checkpoint(src, dst, arch=golden['name'], fuse=True)['deploy']
    stock = RepViT(golden['name'], deploy=True)
    mmengine_load_checkpoint(stock, str(dst), strict=True)
    assert_reproduces_golden(stock, golden, atol=1e-4)
    ours = RepViT(golden['name'], deploy=True,
                  init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    ours.init_weights()
    assert_reproduces_golden(ours, golden, atol=1e-4)


def test_unfused_checkpoint_is_fused_on_load_into_deploy_backbone(golden, tmp_path,
                                                                  log_messages):
    src = save(tmp_path, 'official.pth', {'model': golden['state_dict']})
    model = RepViT(golden['arch'], deploy=True)
    load_backbone_checkpoint(model, src)
    assert_reproduces_golden(model, golden, atol=1e-4)
    assert any('fused the plain weights' in m for m in log_messages)


def test_converter_command_line(tmp_path):
    """The command line writes what ``convert_checkpoint`` writes (whose numbers the golden
    tests check); a published variant, as a subprocess cannot see the tiny archs."""
    torch.manual_seed(0)
    source = synthesise(LAYOUTS['official']['repvit_m0_6'], fill='random')
    src = save(tmp_path, 'official.pth', {'model': source})
    dst = tmp_path / 'cli' / 'm0_6_deploy.pth'
    result = subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'convert_checkpoint.py'), str(src), str(dst),
         '--arch', 'm0_6', '--fuse'], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'm0_6 backbone, fused, from the official layout' in result.stdout
    convert_checkpoint(src, tmp_path / 'in_process.pth', arch='m0_6', fuse=True)
    cli, ref = (torch.load(p, weights_only=True) for p in (dst, tmp_path / 'in_process.pth'))
    assert cli['meta'] == ref['meta'] and cli['state_dict'].keys() == ref['state_dict'].keys()
    assert all(torch.equal(v, ref['state_dict'][k]) for k, v in cli['state_dict'].items())
    load_backbone_checkpoint(RepViT('m0_6', deploy=True), dst)


def test_detector_checkpoint_backbone_prefix(golden, tmp_path, log_messages):
    """An mmengine checkpoint of a whole detector: meta, state_dict with ``backbone.``,
    ``neck.`` ..., optimizer and a message hub holding HistoryBuffers."""
    backbone = convert_official(golden['state_dict'])
    state_dict = {f'backbone.{k}': v for k, v in backbone.items()}
    state_dict.update({'neck.lateral_convs.0.conv.weight': torch.zeros(256, 80, 1, 1),
                       'data_preprocessor.mean': torch.zeros(3, 1, 1)})
    logs = HistoryBuffer([0.5, 0.25], [1, 1])
    path = save(tmp_path, 'epoch_12.pth', {
        'meta': {'epoch': 12, 'iter': 100, 'cfg': 'model = dict()', 'seed': 0},
        'state_dict': state_dict,
        'optimizer': {'state': {}, 'param_groups': [{'lr': 0.01, 'params': [0]}]},
        'message_hub': {'log_scalars': {'train/loss': logs}, 'runtime_info': {}}})
    model = RepViT(golden['arch'], init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert_reproduces_golden(model, golden)
    log = '\n'.join(log_messages)
    assert "mmrepvit layout under 'state_dict' with prefix 'backbone.'" in log
    assert "'neck.': 1" in log and "'data_preprocessor.': 1" in log

    explicit = RepViT(golden['arch'])
    load_backbone_checkpoint(explicit, path, prefix='backbone')  # init_cfg's ``prefix``
    assert_reproduces_golden(explicit, golden)
    with pytest.raises(CheckpointFormatError, match=r"prefix='student\.'.*'backbone\.'"):
        load_backbone_checkpoint(RepViT(golden['arch']), path, prefix='student.')


def test_ddp_prefix_is_dropped_for_backbone_and_whole_model_loading(golden, tmp_path):
    """A checkpoint saved from a DDP-wrapped detector: every key under ``module.``."""
    backbone = {f'module.backbone.{k}': v for k, v in golden['state_dict'].items()}
    path = save(tmp_path, 'ddp.pth', {'state_dict': backbone})
    model = RepViT(golden['arch'], init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert_reproduces_golden(model, golden)
    whole = nn.Module()
    whole.backbone = RepViT(golden['arch'])
    load_model_checkpoint(whole, str(path))  # the original layout under backbone.: renamed
    assert_reproduces_golden(whole.backbone, golden)


def test_each_backbone_reads_the_layouts_it_lists(tmp_path):
    """RepViT's published layouts are RepViT's (MoCoViT's own keys start with ``stages.``, as
    timm's RepViT's do): a RepViT checkpoint given to MoCoViT is named as none of its."""
    path = save(tmp_path, 'official.pth',
                {'model': synthesise(LAYOUTS['official']['repvit_m0_6'])})
    with pytest.raises(CheckpointFormatError, match=r'no MoCoViT checkpoint layout \('
                                                    r'recognised: mmrepvit, mmrepvit_deploy'):
        load_backbone_checkpoint(MoCoViT('0.5x'), path)
    assert RepViT.checkpoint_layouts and not MoCoViT.checkpoint_layouts


# ---- every variant in every layout -------------------------------------------------------------

@pytest.mark.parametrize('layout,variant', CASES, ids=[f'{a}-{b}' for a, b in CASES])
def test_every_layout_and_variant_loads_exactly(layout, variant):
    shapes = LAYOUTS[layout][variant]
    source = synthesise(shapes)  # tensor i holds the value i
    checkpoint = {'model': source} if layout.startswith('official') else source
    model = RepViT(variant.replace('repvit_', ''))
    weights = load_backbone_weights(model, extract_backbone_weights(checkpoint))
    assert weights.layout == layout
    head = sorted(k for k in shapes if k.startswith(HEADS))
    assert weights.dropped_head == head and head
    # A bijection: each non-head tensor of the checkpoint is in exactly one backbone entry and
    # every backbone entry came from one of them.
    loaded = sorted(int(v.flatten()[0]) if v.numel() else int(v) for v in
                    model.state_dict().values())
    assert loaded == [i for i, k in enumerate(shapes) if not k.startswith(HEADS)]
    if layout == 'timm':
        assert timm_depths(source) == model.depths


@pytest.mark.parametrize('variant', ['repvit_m0_9', 'repvit_m1'])
def test_timm_and_official_with_the_same_numbers_give_the_same_features(variant):
    official_layout = 'official' if variant in LAYOUTS['official'] else 'official_legacy'
    official_keys = [k for k in LAYOUTS[official_layout][variant] if not k.startswith(HEADS)]
    timm_keys = [k for k in LAYOUTS['timm'][variant] if not k.startswith(HEADS)]
    torch.manual_seed(0)
    official = synthesise({k: LAYOUTS[official_layout][variant][k] for k in official_keys},
                          fill='random')
    # The two releases register their modules in the same order, so their state_dicts list
    # the same tensors in the same order (the reference data confirms the shapes pair up).
    timm = {t: official[o] for o, t in zip(official_keys, timm_keys)}
    assert [tuple(v.shape) for v in timm.values()] == \
        [tuple(LAYOUTS['timm'][variant][k]) for k in timm_keys]
    arch = variant.replace('repvit_', '')
    x = torch.randn(1, 3, 64, 64)
    feats = []
    for checkpoint in ({'model': official}, timm):
        model = RepViT(arch, taps='detection')
        load_backbone_weights(model, extract_backbone_weights(checkpoint))
        with torch.no_grad():
            feats.append(model.eval()(x))
    for a, b in zip(*feats):
        assert torch.equal(a, b)
    assert feats[0][0].abs().sum() > 0


def test_convert_timm_rows_follow_depths():
    timm = synthesise(LAYOUTS['timm']['repvit_m1_5'])
    depths = RepViT('m1_5').depths
    ours = convert_timm(timm, depths)
    first_of_stage_1 = depths[0]  # index in `blocks` of the stride-2 row opening stage 1
    assert f'blocks.{first_of_stage_1}.proj.conv.weight' in ours  # channel_downsample
    assert f'blocks.{first_of_stage_1 - 1}.token_mixer.dw3x3.conv.weight' in ours  # pre_block
    with pytest.raises(CheckpointFormatError, match='twice'):
        convert_timm(timm, RepViT('m1_1').depths)


# ---- wrong, damaged and foreign files ---------------------------------------------------------

@pytest.mark.parametrize('layout', ['official', 'timm'])
def test_wrong_variant_names_the_keys_and_the_variant_that_fits(layout, tmp_path):
    path = save(tmp_path, 'm1_5.pth', synthesise(LAYOUTS[layout]['repvit_m1_5']))
    model = RepViT('m1_1')
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as info:
        load_backbone_checkpoint(model, path)
    message = str(info.value)
    assert f'({layout} layout) does not fit this RepViT (arch \'m1_1\')' in message
    assert "It fits arch 'm1_5'" in message
    # m1_1's second stride-2 row is blocks.3; m1_5's is blocks.5
    assert 'keys missing from the checkpoint: blocks.3.token_mixer.conv.weight [64, 1, 3, 3]' \
        in message
    assert 'blocks.3.channel_mixer.fc1.conv.weight: checkpoint [128, 64, 1, 1], backbone ' \
        '[256, 128, 1, 1]' in message
    assert '454 keys unexpected (not in the backbone)' in message  # BN counters aside
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched


def test_missing_extra_and_misshapen_keys_are_named(golden, tmp_path):
    state_dict = dict(golden['state_dict'])
    del state_dict['features.5.channel_mixer.m.0.c.weight']
    state_dict['features.2.extra.weight'] = torch.zeros(3)
    state_dict['features.1.token_mixer.1.fc1.bias'] = torch.zeros(9)
    path = save(tmp_path, 'edited.pth', {'model': state_dict})
    with pytest.raises(CheckpointMismatchError) as info:
        load_backbone_checkpoint(RepViT(golden['arch']), path)
    message = str(info.value)
    assert '1 keys missing from the checkpoint: blocks.4.channel_mixer.fc1.conv.weight ' \
           '[32, 16, 1, 1]' in message
    assert '1 keys unexpected (not in the backbone): blocks.1.extra.weight [3]' in message
    assert 'blocks.0.se.fc1.bias: checkpoint [9], backbone [8]' in message
    assert 'fits none of the published variants' in message


def test_fused_checkpoint_switches_a_plain_backbone_to_its_fused_form(
        golden, tmp_path, tiny_zoo, log_messages):
    dst = tmp_path / 'fused.pth'
    convert_checkpoint(save(tmp_path, 'o.pth', golden['state_dict']), dst, fuse=True)
    model = RepViT(golden['arch'])
    load_backbone_checkpoint(model, dst)
    assert model.deploy and count_norms(model) == 0
    assert_reproduces_golden(model, golden, atol=1e-4)
    assert any('switched this backbone to its fused form' in m for m in log_messages)


def test_missing_bn_counters_are_tolerated(golden, tmp_path, log_messages):
    state_dict = {k: v for k, v in golden['state_dict'].items()
                  if not k.endswith('num_batches_tracked')}
    model = RepViT(golden['arch'])
    load_backbone_checkpoint(model, save(tmp_path, 'no_counters.pth', state_dict))
    assert_reproduces_golden(model, golden)
    assert any('no BN num_batches_tracked counters' in m for m in log_messages)


def test_truncated_file(golden, tmp_path):
    path = save(tmp_path, 'full.pth', {'model': golden['state_dict']})
    data = path.read_bytes()
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(data[:len(data) // 2])
    model = RepViT(golden['arch'], init_cfg=dict(type='Pretrained', checkpoint=str(truncated)))
    with pytest.raises(CheckpointFormatError, match=r"truncated\.pth' is truncated"):
        model.init_weights()


def test_file_that_is_not_a_checkpoint(tmp_path):
    text = tmp_path / 'notes.txt'
    text.write_text('model = dict(type="RepViT")\n')
    with pytest.raises(CheckpointFormatError, match=r"notes\.txt' is not a PyTorch checkpoint"):
        load_backbone_checkpoint(RepViT('m0_6'), text)
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(CheckpointFormatError, match='is empty'):
        load_backbone_checkpoint(RepViT('m0_6'), empty)


def test_checkpoint_without_weights_or_of_another_model(tmp_path):
    no_weights = save(tmp_path, 'meta_only.pth', {'meta': {'epoch': 3}, 'optimizer': {}})
    with pytest.raises(CheckpointFormatError, match=r"holds no weights.*'meta', 'optimizer'"):
        load_backbone_checkpoint(RepViT('m0_6'), no_weights)
    resnet = save(tmp_path, 'resnet.pth', {'conv1.weight': torch.zeros(64, 3, 7, 7),
                                           'layer1.0.conv1.weight': torch.zeros(64, 64, 1, 1)})
    with pytest.raises(CheckpointFormatError, match=r"no RepViT checkpoint layout.*timm.*'conv1"):
        load_backbone_checkpoint(RepViT('m0_6'), resnet)


def test_http_url_is_downloaded_once_then_loaded(golden, tmp_path, file_server, monkeypatch):
    save(file_server.folder, 'repvit_tiny.pth', {'model': golden['state_dict']})
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    url = f'{file_server.url}/repvit_tiny.pth'
    for _ in range(2):
        model = RepViT(golden['arch'], init_cfg=dict(type='Pretrained', checkpoint=url))
        model.init_weights()
        assert_reproduces_golden(model, golden)
    assert osp.isfile(cache_path(url))
    assert cache_path(url).startswith(str(tmp_path / 'torch' / 'hub' / 'checkpoints'))
    assert file_server.requests == {'/repvit_tiny.pth': 1}  # the second time: the cache


def serve_model(server, folder, size, value):
    """``folder/model.pth`` on ``server``: ``size`` weights of ``value``, ``meta.which`` =
    folder."""
    (server.folder / folder).mkdir(exist_ok=True)
    save(server.folder / folder, 'model.pth', {'meta': {'which': folder}, 'state_dict': {
        'weight': torch.full((size, ), float(value))}})
    return f'{server.url}/{folder}/model.pth'


def test_urls_ending_in_the_same_file_name_are_different_files(tmp_path, file_server,
                                                               monkeypatch):
    """http://host/a/model.pth, then http://host/b/model.pth: b's file is downloaded and
    loaded (by our loader and by mmengine's, as ``load_from`` / ``init_cfg`` do)."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    url_a, url_b = serve_model(file_server, 'a', 4, 1), serve_model(file_server, 'b', 6, 2)
    assert load_checkpoint_file(url_a)['meta']['which'] == 'a'
    assert load_checkpoint_file(url_b)['meta']['which'] == 'b'
    for url, value in ((url_a, 1), (url_b, 2)):
        model = nn.Module()
        model.weight = nn.Parameter(torch.zeros(4 if value == 1 else 6))
        mmengine_load_checkpoint(model, url, strict=True)
        assert torch.equal(model.weight.data, torch.full_like(model.weight.data, value))
    assert cache_path(url_a) != cache_path(url_b)
    assert file_server.requests == {'/a/model.pth': 1, '/b/model.pth': 1}


def test_cached_file_that_is_not_the_servers_file_is_fetched_again_or_refused(
        tmp_path, file_server, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    url = serve_model(file_server, 'a', 4, 1)
    load_checkpoint_file(url)
    local = cache_path(url)
    # the cached file changed (another file copied over it): downloaded again
    good = open(local, 'rb').read()
    open(local, 'wb').write(good[:-100])
    assert load_checkpoint_file(url)['meta']['which'] == 'a'
    assert open(local, 'rb').read() == good and file_server.requests['/a/model.pth'] == 2
    # the server's file changed (same size, later Last-Modified): downloaded again
    served = file_server.folder / 'a' / 'model.pth'
    mtime = served.stat().st_mtime
    serve_model(file_server, 'a', 4, 3)
    assert served.stat().st_size == len(good)
    os.utime(served, (mtime + 60, mtime + 60))
    assert load_checkpoint_file(url)['state_dict']['weight'].tolist() == [3.0] * 4
    assert file_server.requests['/a/model.pth'] == 3
    assert load_checkpoint_file(url)['state_dict']['weight'].tolist() == [3.0] * 4
    assert file_server.requests['/a/model.pth'] == 3  # the cache
    # offline: the cached file, unless it is not the size it was downloaded at
    file_server.close()
    assert load_checkpoint_file(url)['meta']['which'] == 'a'
    size = osp.getsize(local)
    open(local, 'ab').write(b'tail')
    with pytest.raises(CheckpointDownloadError) as info:
        load_checkpoint_file(url)
    message = str(info.value)
    assert f"Could not download checkpoint '{url}'" in message
    assert f'the cached file was removed: it is {size + 4} bytes, but was {size} bytes when ' \
        f'downloaded' in message and local in message
    assert not osp.exists(local) and not osp.exists(record_path(local))


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / 'nowhere' / 'repvit.pth'
    with pytest.raises(FileNotFoundError, match='nowhere/repvit.pth'):
        load_backbone_checkpoint(RepViT('m0_6'), missing)


def test_converter_checks_the_requested_arch(golden, tmp_path, tiny_zoo):
    src = save(tmp_path, 'official.pth', {'model': golden['state_dict']})
    with pytest.raises(CheckpointMismatchError, match=f"It fits arch '{golden['name']}'"):
        convert_checkpoint(src, tmp_path / 'x.pth', arch='m0_9')
    with pytest.raises(KeyError, match='valid: m0_6, m0_9'):
        convert_checkpoint(src, tmp_path / 'x.pth', arch='m9')
    assert not (tmp_path / 'x.pth').exists()
