"""The original release's trained models as released: whole-model checkpoints written
the way mmdet 2.28 / mmseg 0.30 wrote them (original ``backbone.features.N`` keys, the toolboxes'
neck and head keys, mmdet 2 ``meta`` with ``CLASSES``, ``optimizer``, apex ``amp``) load
strictly into this project's configs, in every loader, and by URL (a local HTTP server).

The files are made here from the tiny golden case (tests/data: the original implementation's
weights and ``features`` outputs) with this project's demo heads, so that the checks are exact
and fast; the published variants' key names come from tests/data's layouts."""
import copy
import gzip
import importlib.util
import json
import os.path as osp
import pickle
import traceback
from collections import OrderedDict

import pytest
import torch
from conftest import DATA, REPO, randomise_bn
from mmengine.runner import load_checkpoint
from model_steps import (
    assert_same_detections,
    assert_same_segmentation,
    synthetic_det_batch,
    synthetic_seg_batch,
)
from tiny_runs import make_data, packaged_test, write_det_config, write_seg_config

from mmrepvit.apis import build_model, load_config, prepare_test_cfg
from mmrepvit.apis import test as run_test
from mmrepvit.apis.infer import infer
from mmrepvit.checkpoint import (
    CheckpointDownloadError,
    extract_backbone_weights,
    load_backbone_weights,
    load_checkpoint_file,
    load_model_checkpoint,
    resolve_checkpoint_path,
)
from mmrepvit.checkpoint.download import MIRROR_ENV, RELEASE_URL, cache_path
from mmrepvit.models import RepViT

JOBS = ('det', 'seg')
# class names only the checkpoints carry (the configs' are the demo's)
CLASSES = {'det': ('ring', 'wedge', 'box', 'spark'),
           'seg': ('void', 'ring', 'wedge', 'box', 'spark')}
PALETTE = [[0, 0, 0], [10, 20, 30], [40, 50, 60], [70, 80, 90], [100, 110, 120]]
TINY_NECK = [8, 16, 24, 32]


def write_tiny_config(root, job, data, arch):
    """The demo config of the job (this project's Mask R-CNN / Semantic FPN RepViT-M1.1
    recipe, scaled down) on 64x64 demo data, with the tiny golden backbone."""
    write = write_det_config if job == 'det' else write_seg_config
    base = write(root / f'{job}_base.py', data)
    path = root / f'{job}.py'
    arch = dict(_delete_=True, **arch)  # a dict where the base names a variant
    path.write_text(f'_base_ = {base!r}\nmodel = dict(backbone=dict(arch={arch!r}), '
                    f'neck=dict(in_channels={TINY_NECK!r}))\n')
    return str(path)


def metadata_of(state_dict):
    """The ``_metadata`` torch's ``state_dict()`` attaches (module -> version), as mmcv 1.x
    saved it."""
    modules = {k.rsplit('.', 1)[0] for k in state_dict}
    return OrderedDict((m, dict(version=2 if f'{m}.running_var' in state_dict else 1))
                       for m in sorted(modules))


def save_like_toolbox_v2(path, job, state_dict, model):
    """A checkpoint as mmcv 1.7's runner saved it for mmdet 2.28 / mmseg 0.30 under the
    original release's training code (its ``save_checkpoint`` adds apex's ``amp`` state)."""
    state_dict = OrderedDict(state_dict)
    state_dict._metadata = metadata_of(state_dict)
    trained = copy.deepcopy(model)  # an optimizer state after a step, the model untouched
    optimizer = torch.optim.AdamW(trained.parameters(), lr=2e-4, weight_decay=0.05)
    for p in trained.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    meta = dict(env_info='sys.platform: linux\nPython: 3.8.16\nPyTorch: 1.12.1+cu113',
                config=f"model = dict(type='{'MaskRCNN' if job == 'det' else 'EncoderDecoder'}'"
                       f", backbone=dict(type='repvit_m1_1', out_indices=[2, 6, 20, 24]))",
                seed=0, exp_name='mask_rcnn_repvit_m1_1_fpn_1x_coco.py', CLASSES=CLASSES[job],
                mmcv_version='1.7.1', time='Sat Jul 15 10:11:12 2023',
                hook_msgs=dict(last_ckpt='work_dirs/latest.pth'))
    if job == 'det':
        meta.update(mmdet_version='2.28.2', epoch=12, iter=87960)
    else:
        meta.update(mmseg_version='0.30.0', PALETTE=PALETTE, epoch=1, iter=40000)
    amp = OrderedDict(loss_scaler0=dict(loss_scale=65536.0, unskipped=387))
    torch.save(dict(meta=meta, state_dict=state_dict, optimizer=optimizer.state_dict(),
                    amp=amp), path)
    return str(path)


@pytest.fixture(scope='module')
def released(tmp_path_factory, tiny_golden):
    """Per job: the model a released file was made from (``reference``: the tiny golden
    backbone, random heads), the file in the original's layout and the toolbox's 2.x format
    (``path``), the same model as a native checkpoint (``native``), its config, data."""
    root = tmp_path_factory.mktemp('released')
    data = make_data(root / 'data')
    golden = tiny_golden['current']
    backbone = {k: v for k, v in golden['state_dict'].items()
                if not k.startswith('classifier.')}
    out = {}
    for job in JOBS:
        config = write_tiny_config(root, job, data, tiny_golden['arch'])
        torch.manual_seed(0)
        model = build_model(load_config(config))
        model.init_weights()
        randomise_bn(model)
        load_backbone_weights(model.backbone, extract_backbone_weights(backbone))
        if job == 'det':  # confident boxes, so that there are detections to compare
            model.roi_head.bbox_head.fc_cls.bias.data[0] += 6.0
        model.eval()
        heads = {k: v for k, v in model.state_dict().items() if not k.startswith('backbone.')}
        original = {**{f'backbone.{k}': v for k, v in backbone.items()}, **heads}
        native = root / f'{job}_native.pth'
        torch.save(dict(meta=dict(dataset_meta=dict(classes=CLASSES[job])),
                        state_dict=model.state_dict()), native)
        folder = 'coco/val2017' if job == 'det' else 'ade/images/validation'
        out[job] = dict(config=config, reference=model, native=str(native),
                        path=save_like_toolbox_v2(root / f'repvit_tiny_{job}.pth', job,
                                                  original, model),
                        images=sorted(str(p) for p in (data / folder).glob('*.jpg')))
    return out


def batch(job, seed=3):
    if job == 'det':
        return synthetic_det_batch(size=(64, 64), num_classes=4, seed=seed)
    return synthetic_seg_batch(size=(64, 64), num_classes=5, seed=seed)


def assert_predicts_like(reference, model, job):
    model.eval()
    with torch.no_grad():
        refs, outs = reference.test_step(batch(job)), model.test_step(batch(job))
    check = assert_same_detections if job == 'det' else assert_same_segmentation
    for ref, out in zip(refs, outs):
        check(ref, out)


def test_the_file_is_written_as_the_toolboxes_2x_wrote_it(released):
    checkpoint = load_checkpoint_file(released['det']['path'])  # weights_only=True
    assert set(checkpoint) == {'meta', 'state_dict', 'optimizer', 'amp'}
    keys = list(checkpoint['state_dict'])
    assert 'backbone.features.0.0.c.weight' in keys and 'backbone.stem.0.conv.weight' not in keys
    assert {'neck.', 'rpn_head.', 'roi_head.'} <= {k.split('.')[0] + '.' for k in keys}
    assert checkpoint['meta']['CLASSES'] == CLASSES['det']


@pytest.mark.parametrize('job', JOBS)
def test_strict_load_backbone_computes_the_originals_features(released, tiny_golden, job):
    """Our tools' strict loader and mmengine's own loader in strict mode both take the file;
    the backbone's taps are the original ``features`` outputs; the model predicts as the one
    the file was made from."""
    golden = tiny_golden['current']
    cfg = load_config(released[job]['config'])
    ours, stock = build_model(cfg).eval(), build_model(cfg).eval()
    load_model_checkpoint(ours, released[job]['path'])
    load_checkpoint(stock, released[job]['path'], map_location='cpu', strict=True)
    for model in (ours, stock):
        with torch.no_grad():
            taps = model.backbone(tiny_golden['input'])
        for out, row in zip(taps, model.backbone.tap_rows):
            torch.testing.assert_close(out, golden['features'][row], atol=1e-5, rtol=0)
        assert_predicts_like(released[job]['reference'], model, job)


@pytest.fixture(scope='module')
def file_metrics(released, tmp_path_factory):
    """tools/test.py's metrics of each released file (its predictions are the reference
    model's, above)."""
    root = tmp_path_factory.mktemp('file_metrics')
    return {job: run_test(prepare_test_cfg(released[job]['config'], released[job]['path'],
                                           work_dir=str(root / job))) for job in JOBS}


@pytest.mark.parametrize('job', JOBS)
def test_test_tool_evaluates_the_released_file(file_metrics, job):
    assert ('coco/bbox_mAP' if job == 'det' else 'mIoU') in file_metrics[job]


def test_mmdet_packaged_test_py(released, file_metrics, tmp_path):
    """mmdet's own tools/test.py (Runner ``load_from``: mmengine's loader, the backbone's load
    hook renames the original's keys). mmseg's runs the same loader; its APIs are below."""
    paths = released['det']
    out = tmp_path / 'out.pkl'
    metrics = packaged_test('mmdet', paths['config'], paths['path'], tmp_path, out)
    assert metrics == pytest.approx(file_metrics['det'], abs=1e-4)
    assert len(pickle.load(open(out, 'rb'))) == len(paths['images'])


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('job', JOBS)
@pytest.mark.parametrize('fuse', [False, True])
def test_convert_tool_writes_a_native_checkpoint(released, tiny_zoo, job, fuse, tmp_path):
    paths = released[job]
    dst = tmp_path / 'native.pth'
    args = [paths['path'], str(dst), '--whole-model'] + (['--fuse'] if fuse else [])
    assert load_tool('convert_checkpoint').main(args) == 0
    converted = load_checkpoint_file(str(dst))
    assert set(converted) == {'meta', 'state_dict'}  # no optimizer, no apex state
    meta = converted['meta']
    assert meta['arch'] == 'tiny' and meta['deploy'] == fuse
    assert tuple(meta['dataset_meta']['classes']) == CLASSES[job]
    assert meta['dataset_meta'].get('palette') == (PALETTE if job == 'seg' else None)
    assert meta['source_meta']['iter'] == (87960 if job == 'det' else 40000)
    assert not any(k.startswith('backbone.features.') for k in converted['state_dict'])
    model = build_model(load_config(paths['config'])).eval()
    load_model_checkpoint(model, str(dst))
    assert model.backbone.deploy == fuse
    assert_predicts_like(paths['reference'], model, job)


def test_convert_tool_names_a_backbone_only_file(released, tiny_golden, tmp_path, capsys):
    src = tmp_path / 'imagenet.pth'
    torch.save(dict(model=tiny_golden['current']['state_dict']), src)
    assert load_tool('convert_checkpoint').main([str(src), str(tmp_path / 'x.pth'),
                                                 '--whole-model']) == 1
    assert 'not a whole detector / segmentor checkpoint' in capsys.readouterr().err


def test_det_apis_take_class_names_from_classes(released):
    from mmdet.apis import DetInferencer, inference_detector, init_detector
    paths = released['det']
    image = paths['images'][0]
    ref = inference_detector(init_detector(paths['config'], paths['native'], device='cpu'),
                             image)
    model = init_detector(paths['config'], paths['path'], device='cpu')
    assert tuple(model.dataset_meta['classes']) == CLASSES['det']
    assert_same_detections(ref, inference_detector(model, image))
    inferencer = DetInferencer(model=paths['config'], weights=paths['path'], device='cpu',
                               show_progress=False)
    assert tuple(inferencer.model.dataset_meta['classes']) == CLASSES['det']
    assert_same_detections(ref, inferencer(image, return_datasamples=True)['predictions'][0])


def test_seg_apis_take_class_names_and_palette(released):
    from mmseg.apis import MMSegInferencer, inference_model, init_model
    paths = released['seg']
    image = paths['images'][0]
    ref = inference_model(init_model(paths['config'], paths['native'], device='cpu'), image)
    model = init_model(paths['config'], paths['path'], device='cpu')
    assert tuple(model.dataset_meta['classes']) == CLASSES['seg']
    assert_same_segmentation(ref, inference_model(model, image))
    inferencer = MMSegInferencer(model=paths['config'], weights=paths['path'], device='cpu')
    assert tuple(inferencer.model.dataset_meta['classes']) == CLASSES['seg']
    assert inferencer.model.dataset_meta['palette'] == PALETTE
    assert_same_segmentation(ref, inferencer(image, return_datasamples=True))


@pytest.mark.parametrize('job', JOBS)
def test_infer_tool_names_the_released_classes(released, job, tmp_path):
    paths = released[job]
    infer(paths['images'][0], paths['config'], paths['path'], str(tmp_path), score_thr=0.0)
    name = osp.splitext(osp.basename(paths['images'][0]))[0]
    pred = json.load(open(tmp_path / 'preds' / f'{name}.json'))
    named = {d['class_name'] for d in pred['detections']} if job == 'det' else \
        set(pred['class_fractions'])
    assert named and named <= set(CLASSES[job])
    with pytest.raises(ValueError, match='mmdet 2 / mmseg 0 config'):
        infer(paths['images'][0], None, paths['path'], str(tmp_path / 'no_config'))


@pytest.mark.parametrize('job, config', [('det', 'maskrcnn_repvit_m1_1_coco.py'),
                                         ('seg', 'fpn_repvit_m1_1_ade20k.py')])
def test_published_variant_keys_fit_our_configs(job, config):
    """The original's key names for RepViT-M1.1 (tests/data's layouts) with this project's
    Mask R-CNN / Semantic FPN head keys: a strict fit of the published config's model."""
    with gzip.open(DATA / 'repvit_checkpoint_layouts.json.gz', 'rt') as f:
        layout = json.load(f)['official']['repvit_m1_1']
    cfg = load_config(osp.join(REPO, 'configs', config))
    cfg.model.backbone.init_cfg = None
    model = build_model(cfg)
    state = {f'backbone.{k}': torch.zeros(shape) for k, shape in layout.items()
             if not k.startswith('classifier.')}
    state.update({k: v for k, v in model.state_dict().items() if not k.startswith('backbone.')})
    load_model_checkpoint(model, dict(state_dict=state))


# -- by URL ------------------------------------------------------------------------------------

@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    return tmp_path / 'torch' / 'hub' / 'checkpoints'


def test_url_downloads_once_for_test_tool_init_cfg_and_inferencer(
        released, file_metrics, tiny_golden, file_server, torch_home, tmp_path):
    from mmdet.apis import DetInferencer
    paths = released['det']
    name = osp.basename(paths['path'])
    (file_server.folder / name).write_bytes(open(paths['path'], 'rb').read())
    torch.save(dict(model=tiny_golden['current']['state_dict']),
               file_server.folder / 'imagenet.pth')
    url = f'{file_server.url}/{name}'
    cfg = prepare_test_cfg(paths['config'], url, work_dir=str(tmp_path))
    assert cfg.test_checkpoint == cache_path(url)
    assert cache_path(url).startswith(str(torch_home))
    assert run_test(cfg) == file_metrics['det']
    # again: read from the cache (the request count below)
    assert prepare_test_cfg(paths['config'], url).test_checkpoint == cfg.test_checkpoint
    inferencer = DetInferencer(model=paths['config'], weights=url, device='cpu',
                               show_progress=False)
    assert tuple(inferencer.model.dataset_meta['classes']) == CLASSES['det']
    assert_predicts_like(paths['reference'], inferencer.model, 'det')
    for _ in range(2):  # a backbone's init_cfg (the ImageNet weights)
        backbone = RepViT(tiny_golden['arch'], init_cfg=dict(
            type='Pretrained', checkpoint=f'{file_server.url}/imagenet.pth'))
        backbone.init_weights()
        for key, value in paths['reference'].backbone.state_dict().items():
            assert torch.equal(backbone.state_dict()[key], value), key
    assert file_server.requests == {f'/{name}': 1, '/imagenet.pth': 1}


def test_release_mirror_server_or_folder(released, file_server, torch_home, monkeypatch):
    paths = released['det']
    name = osp.basename(paths['path'])
    (file_server.folder / name).write_bytes(open(paths['path'], 'rb').read())
    release_url = RELEASE_URL + name
    monkeypatch.setenv(MIRROR_ENV, file_server.url)
    model = build_model(load_config(paths['config']))
    load_checkpoint(model, release_url, map_location='cpu', strict=True)  # mmengine's loader
    assert osp.isfile(cache_path(release_url)) and file_server.requests == {f'/{name}': 1}
    monkeypatch.setenv(MIRROR_ENV, str(file_server.folder))
    cfg = prepare_test_cfg(paths['config'], release_url)
    assert cfg.test_checkpoint == str(file_server.folder / name)
    assert file_server.requests == {f'/{name}': 1}


def assert_says_what_to_do(message, url, local):
    assert url in message and local in message, message
    assert '--cfg-options model.backbone.init_cfg.checkpoint=PATH' in message
    assert 'load_from=PATH' in message


def test_not_found_or_no_server_is_an_error_saying_what_to_do(
        released, file_server, torch_home, tmp_path):
    missing = f'{file_server.url}/repvit_m1_1_coco.pth'
    with pytest.raises(CheckpointDownloadError, match='404') as info:
        prepare_test_cfg(released['det']['config'], missing)
    assert_says_what_to_do(str(info.value), missing, cache_path(missing))
    file_server.close()
    absent = f'{file_server.url}/repvit_m1_1_ade20k.pth'
    cfg = load_config(released['seg']['config'])
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=absent)
    with pytest.raises(CheckpointDownloadError, match='Connection refused') as info:
        build_model(cfg).init_weights()
    assert_says_what_to_do(str(info.value), absent, cache_path(absent))
    assert not any(torch_home.glob('*')) if torch_home.exists() else True
    # tools/test.py: the message, not a traceback from inside urllib
    with pytest.raises(CheckpointDownloadError, match='Connection refused') as info:
        load_tool('test').main([released['det']['config'], absent])
    printed = ''.join(traceback.format_exception(info.value))
    assert absent in printed and 'urllib' not in printed, printed


def test_release_urls_in_the_configs_resolve_through_the_mirror(tmp_path, monkeypatch):
    """Every config names its ImageNet weights by release URL; with a mirror folder holding
    the file, nothing is downloaded."""
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path))
    cfg = load_config(osp.join(REPO, 'configs', 'maskrcnn_repvit_m2_3_coco.py'))
    url = cfg.model.backbone.init_cfg.checkpoint
    assert url == RELEASE_URL + 'repvit_m2_3_distill_450e.pth'
    (tmp_path / 'repvit_m2_3_distill_450e.pth').write_bytes(b'')
    assert resolve_checkpoint_path(url) == str(tmp_path / 'repvit_m2_3_distill_450e.pth')
