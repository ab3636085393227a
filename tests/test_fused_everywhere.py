"""Fused checkpoints used the way an mmdet / mmseg user uses any checkpoint: with the config the
model was trained with, through the toolboxes' own loaders, APIs and packaged tools/test.py,
and through tools/infer.py. Each must give the plain checkpoint's predictions; a checkpoint
that does not fit must be an error naming what does not fit, never a silent half-load."""
import glob
import json
import os
import os.path as osp
import pickle
import runpy
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.runner import load_checkpoint
from model_steps import assert_same_detections, assert_same_segmentation
from tiny_runs import packaged_test

from mmrepvit.apis import build_model, convert_checkpoint, load_config, prepare_test_cfg
from mmrepvit.apis import test as run_test
from mmrepvit.apis.infer import infer
from mmrepvit.checkpoint import load_checkpoint_file, load_model_checkpoint
from mmrepvit.demo.run import DEMO_CONFIGS, _data_options
from mmrepvit.errors import CheckpointMismatchError

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DATA_SPLIT = {'maskrcnn': ('coco', 'val2017'), 'fpn': ('ade', 'images/validation')}


def nested(options):
    """``{'a.b.c': v}`` -> ``{'a': {'b': {'c': v}}}``."""
    out = {}
    for key, value in options.items():
        node = out
        *parents, last = key.split('.')
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


@pytest.fixture(scope='module')
def user(demo_run, tmp_path_factory):
    """What a user has: their own config files inheriting ours (pointing at their data), the
    plain and the fused checkpoint of each model, some images."""
    root = tmp_path_factory.mktemp('user')
    out = {}
    for job in ('maskrcnn', 'fpn'):
        config = root / f'my_{job}.py'
        lines = [f'_base_ = {DEMO_CONFIGS[job]!r}']
        lines += [f'{k} = {v!r}' for k, v in
                  nested(_data_options(demo_run['data_root'], job)).items()]
        config.write_text('\n'.join(lines) + '\n')
        folder, split = DATA_SPLIT[job]
        job_dir = osp.join(demo_run['work_dir'], job)
        out[job] = dict(config=str(config), plain=osp.join(job_dir, 'iter_3.pth'),
                        fused=osp.join(job_dir, 'fused.pth'),
                        images=sorted(glob.glob(osp.join(demo_run['data_root'], folder, split,
                                                         '*.jpg'))))
    return out


def test_fused_checkpoint_is_the_fused_model_in_mmengine_load_checkpoint(user):
    """``mmengine.runner.load_checkpoint`` (what Runner(load_from=...) and every toolbox API
    call, strict=False) into the training config's plain model."""
    from mmdet.apis import inference_detector
    cfg = load_config(user['maskrcnn']['config'])
    plain, fused = build_model(cfg).eval(), build_model(cfg).eval()
    load_checkpoint(plain, user['maskrcnn']['plain'], map_location='cpu')
    load_checkpoint(fused, user['maskrcnn']['fused'], map_location='cpu')
    assert fused.backbone.deploy and not plain.backbone.deploy
    for model in (plain, fused):
        model.cfg = cfg
    image = user['maskrcnn']['images'][0]
    assert_same_detections(inference_detector(plain, image), inference_detector(fused, image))


def test_mmdet_apis(user):
    from mmdet.apis import DetInferencer, inference_detector, init_detector
    job = user['maskrcnn']
    images = job['images'][:2]
    plain = init_detector(job['config'], job['plain'], device='cpu')
    refs = [inference_detector(plain, image) for image in images]
    fused = init_detector(job['config'], job['fused'], device='cpu')
    assert fused.backbone.deploy
    for image, ref in zip(images, refs):
        assert_same_detections(ref, inference_detector(fused, image))
    for kwargs in (dict(model=job['config']), dict()):  # no config: the checkpoint's own
        inferencer = DetInferencer(weights=job['fused'], device='cpu', show_progress=False,
                                   **kwargs)
        assert inferencer.model.backbone.deploy
        assert inferencer.model.dataset_meta['classes'][0] == 'circle'
        preds = inferencer(images, return_datasamples=True)['predictions']
        for ref, pred in zip(refs, preds):
            assert_same_detections(ref, pred)


def test_mmseg_apis(user):
    from mmseg.apis import MMSegInferencer, inference_model, init_model
    job = user['fpn']
    image = job['images'][0]
    ref = inference_model(init_model(job['config'], job['plain'], device='cpu'), image)
    fused = init_model(job['config'], job['fused'], device='cpu')
    assert fused.backbone.deploy
    assert_same_segmentation(ref, inference_model(fused, image))
    for model in (job['config'], None):  # no config: the checkpoint's own
        inferencer = MMSegInferencer(model=model, weights=job['fused'], device='cpu')
        assert inferencer.model.backbone.deploy
        assert_same_segmentation(ref, inferencer(image, return_datasamples=True))


def read_detections(out):
    results = pickle.load(open(out, 'rb'))
    assert len(results) == 3 and all(len(r['pred_instances']['scores']) for r in results)
    return [r['pred_instances'] for r in results]


def read_maps(out):
    maps = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(out.glob('*.png'))]
    assert len(maps) == 3
    return maps


@pytest.mark.parametrize('job', ['maskrcnn', 'fpn'])
def test_packaged_test_py_gives_the_same_results(user, job, tmp_path):
    """mmdet's / mmseg's own tools/test.py: same metrics, same per-image predictions."""
    toolbox, out_name, read = {'maskrcnn': ('mmdet', 'out.pkl', read_detections),
                               'fpn': ('mmseg', 'maps', read_maps)}[job]
    metrics, preds = {}, {}
    for name in ('plain', 'fused'):
        out = tmp_path / name / out_name
        metrics[name] = packaged_test(toolbox, user[job]['config'], user[job][name],
                                      tmp_path / name, out)
        preds[name] = read(out)
    assert metrics['plain'] == pytest.approx(metrics['fused'], abs=1e-4)
    assert ('coco/segm_mAP' if job == 'maskrcnn' else 'mIoU') in metrics['fused']
    for a, b in zip(preds['plain'], preds['fused']):
        if job == 'fpn':
            assert np.array_equal(a, b)
            continue
        assert torch.equal(a['labels'], b['labels'])
        assert (a['bboxes'] - b['bboxes']).abs().max() <= 1e-3
        assert (a['scores'] - b['scores']).abs().max() <= 1e-4


@pytest.mark.parametrize('job', ['maskrcnn', 'fpn'])
def test_fused_backbone_checkpoint_as_pretrained_init(user, job, tmp_path):
    """A fused *backbone* checkpoint (tools/convert_checkpoint.py --fuse) as the backbone's
    ``init_cfg=dict(type='Pretrained')``; the rest of the model from the plain checkpoint."""
    paths = user[job]
    backbone = tmp_path / 'backbone_fused.pth'
    assert convert_checkpoint(paths['plain'], backbone, fuse=True)['deploy']
    cfg = load_config(paths['config'])
    plain = build_model(cfg).eval()
    load_model_checkpoint(plain, paths['plain'])
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(backbone))
    model = build_model(cfg)
    model.init_weights()
    assert model.backbone.deploy
    rest = {k: v for k, v in load_checkpoint_file(paths['plain'])['state_dict'].items()
            if not k.startswith('backbone.')}
    model.load_state_dict(rest, strict=False)
    model.eval()
    from model_steps import synthetic_det_batch, synthetic_seg_batch
    make = synthetic_det_batch if job == 'maskrcnn' else synthetic_seg_batch
    batch = make(size=(128, 128), num_classes=4, seed=5)
    with torch.no_grad():
        for ref, out in zip(plain.test_step(batch), model.test_step(batch)):
            (assert_same_detections if job == 'maskrcnn' else assert_same_segmentation)(ref, out)


# -- checkpoints that do not fit ---------------------------------------------------------------

@pytest.fixture(scope='module')
def misfits(user, tmp_path_factory):
    """Checkpoints a user may hand the detector config by mistake."""
    root = tmp_path_factory.mktemp('misfits')
    cfg = load_config(user['maskrcnn']['config'])
    cfg.model.backbone.update(arch='m0_9', init_cfg=None)
    cfg.model.neck.in_channels = [48, 96, 192, 384]
    variant = root / 'wrong_variant.pth'
    torch.save(dict(state_dict=build_model(cfg).state_dict()), variant)
    state = load_checkpoint_file(user['maskrcnn']['plain'])['state_dict']
    keys = list(state)
    heads_cut, backbone_cut = root / 'truncated_heads.pth', root / 'truncated_backbone.pth'
    torch.save(dict(state_dict={k: state[k] for k in keys[:-6]}), heads_cut)  # cut at the end
    torch.save(dict(state_dict={k: v for i, (k, v) in enumerate(state.items())
                                if not (k.startswith('backbone.') and i % 7 == 0)}),
               backbone_cut)
    return dict(variant=str(variant), other_model=user['fpn']['plain'],
                heads_cut=str(heads_cut), backbone_cut=str(backbone_cut))


# what each error must name: the keys, shapes or parts that do not fit
EXPECTED = {
    'variant': ["It fits arch 'm0_9'", 'keys of the wrong shape'],
    # (the demo FPN's neck is as wide as the detector's, so only the parts differ)
    'other_model': ['decode_head', 'roi_head', 'rpn_head', 'Is it the checkpoint of this'],
    'heads_cut': ['keys missing from the checkpoint', 'roi_head.mask_head'],
    'backbone_cut': ['does not fit this RepViT', 'keys missing from the checkpoint'],
}


@pytest.mark.parametrize('misfit', list(EXPECTED))
def test_test_tool_refuses_a_checkpoint_that_does_not_fit(user, misfits, misfit, tmp_path):
    cfg = prepare_test_cfg(user['maskrcnn']['config'], misfits[misfit], work_dir=str(tmp_path))
    with pytest.raises(CheckpointMismatchError) as info:
        run_test(cfg)
    for phrase in EXPECTED[misfit]:
        assert phrase in str(info.value)


@pytest.mark.parametrize('misfit', list(EXPECTED))
def test_infer_tool_refuses_a_checkpoint_that_does_not_fit(user, misfits, misfit, tmp_path):
    with pytest.raises(CheckpointMismatchError) as info:
        infer(user['maskrcnn']['images'][0], user['maskrcnn']['config'], misfits[misfit],
              str(tmp_path))
    for phrase in EXPECTED[misfit]:
        assert phrase in str(info.value)
    assert not list(tmp_path.rglob('*.png'))


@pytest.mark.parametrize('misfit', ['variant', 'backbone_cut'])
def test_det_inferencer_refuses_a_backbone_that_does_not_fit(user, misfits, misfit):
    """mmdet's own inferencer loads non-strictly; the backbone's load hook still refuses
    weights that fit neither of its forms. (A checkpoint whose backbone fits but whose heads
    do not is refused by our tools, above, and only logged by mmdet's loader.)"""
    from mmdet.apis import DetInferencer
    with pytest.raises(CheckpointMismatchError) as info:
        DetInferencer(model=user['maskrcnn']['config'], weights=misfits[misfit], device='cpu')
    for phrase in EXPECTED[misfit]:
        assert phrase in str(info.value)


# -- tools/infer.py ----------------------------------------------------------------------------

def make_video(images, path, repeat=2):
    frames = [cv2.imread(p) for p in images for _ in range(repeat)]
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 5, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return len(frames)


@pytest.mark.parametrize('job', ['maskrcnn', 'fpn'])
def test_infer_tool_on_image_folder_and_video(user, job, tmp_path):
    paths = user[job]
    folder = osp.dirname(paths['images'][0])
    video = tmp_path / 'clip.mp4'
    num_frames = make_video(paths['images'][:2], video)
    # (3 training iterations: scores stay low, hence the low threshold)
    runs = {  # the command line once (config read from the checkpoint), the library else
        'image_plain': (paths['images'][0], paths['config'], paths['plain'], False),
        'folder_fused': (folder, paths['config'], paths['fused'], True),
        'video_plain': (str(video), paths['config'], paths['plain'], False),
    }
    for name, (inputs, config, weights, fuse) in runs.items():
        infer(inputs, config, weights, str(tmp_path / name), score_thr=0.1, fuse=fuse)
    result = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'infer.py'),
                             paths['images'][0], '--weights', paths['fused'], '--out-dir',
                             str(tmp_path / 'image_fused'), '--score-thr', '0.1'],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    image_name = osp.splitext(osp.basename(paths['images'][0]))[0]
    preds = {name: json.load(open(tmp_path / name / 'preds' / f'{image_name}.json'))
             for name in ('image_plain', 'image_fused', 'folder_fused')}
    key = 'detections' if job == 'maskrcnn' else 'class_fractions'
    assert preds['image_plain'][key]  # something was predicted (score >= 0.1 / some class)
    for name in ('image_fused', 'folder_fused'):
        if job == 'maskrcnn':
            assert [d['label'] for d in preds[name][key]] == \
                [d['label'] for d in preds['image_plain'][key]]
            for a, b in zip(preds[name][key], preds['image_plain'][key]):
                assert np.allclose(a['bbox'], b['bbox'], atol=0.02)
        else:
            assert preds[name][key] == preds['image_plain'][key]
    assert len(list((tmp_path / 'folder_fused' / 'preds').glob('*.json'))) == \
        len(paths['images'])
    pictures = sorted((tmp_path / 'folder_fused' / 'vis').glob('*.png'))
    assert len(pictures) == len(paths['images'])
    picture, image = cv2.imread(str(pictures[0])), cv2.imread(paths['images'][0])
    # detection: the image with boxes drawn on it; segmentation: image | colour map
    assert picture.shape[1] == image.shape[1] * (1 if job == 'maskrcnn' else 2)
    if job == 'maskrcnn':
        assert not np.array_equal(picture, image)
    else:
        assert np.abs(picture[:, :image.shape[1]].astype(int) - image).mean() < 2
    frames = json.load(open(tmp_path / 'video_plain' / 'preds' / 'clip.json'))['frames']
    assert len(frames) == num_frames
    assert cv2.VideoCapture(str(tmp_path / 'video_plain' / 'vis' / 'clip.mp4')).get(
        cv2.CAP_PROP_FRAME_COUNT) == num_frames


# -- one read per checkpoint -------------------------------------------------------------------

@pytest.fixture
def counted_reads(monkeypatch):
    """The files ``torch.load`` reads from here on, in order."""
    reads = []
    torch_load = torch.load

    def counting_load(f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):
            reads.append(osp.realpath(f))
        return torch_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, 'load', counting_load)
    return reads


@pytest.mark.parametrize('form', ['plain', 'fused'])
def test_the_test_and_infer_tools_read_the_checkpoint_once(user, form, counted_reads,
                                                           tmp_path):
    """tools/test.py and tools/infer.py as the command lines run them (their ``main``):
    the checkpoint file is unpickled once, and still loaded (metrics, predictions)."""
    paths = user['fpn']
    checkpoint = paths[form]
    tool = {name: runpy.run_path(osp.join(REPO, 'tools', f'{name}.py'))['main']
            for name in ('test', 'infer')}
    metrics = tool['test']([paths['config'], checkpoint, '--work-dir', str(tmp_path / 'test')])
    assert counted_reads.count(osp.realpath(checkpoint)) == 1, counted_reads
    assert metrics['mIoU'] > 0
    counted_reads.clear()
    written = tool['infer']([paths['images'][0], paths['config'], '--weights', checkpoint,
                             '--out-dir', str(tmp_path / 'infer')])
    assert counted_reads.count(osp.realpath(checkpoint)) == 1, counted_reads
    assert any(f.endswith('.json') for f in written)
