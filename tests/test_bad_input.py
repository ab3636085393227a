"""Bad input fails clearly: damaged checkpoints, misspelt config types and arguments,
unreadable images, datasets without annotations, and a loss that turns NaN."""
import json
import shutil

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import load_checkpoint as mmengine_load_checkpoint
from tiny_runs import REPO, make_data, write_det_config, write_seg_config

from mmrepvit.apis import load_config, prepare_test_cfg, prepare_train_cfg, train
from mmrepvit.apis import test as run_test
from mmrepvit.checkpoint import CheckpointFormatError, UnsafeCheckpointError
from mmrepvit.config import ConfigTextError
from mmrepvit.datasets import DatasetAnnotationError, UnreadableFileError
from mmrepvit.engine import NonFiniteLossError


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp('bad_input') / 'data')


@pytest.fixture
def own_data(data, tmp_path):
    """A copy of the data this test may damage."""
    return shutil.copytree(data, tmp_path / 'data')


def run_train(config, work_dir, options=None, **kwargs):
    options = dict(options or {}, experiment_name=f'bad_input_{work_dir.parent.name}')
    return train(prepare_train_cfg(config, work_dir=str(work_dir), cfg_options=options,
                                   **kwargs))


def truncated_checkpoint(path):
    torch.save({'meta': {'iter': 2}, 'state_dict': {'w': torch.randn(256, 256)}}, path)
    with open(path, 'r+b') as f:
        f.truncate(4000)
    return str(path)


# --- checkpoints -------------------------------------------------------------------------


def test_resume_from_a_truncated_or_corrupted_checkpoint_names_the_file(data, tmp_path):
    config = write_seg_config(tmp_path / 'seg.py', data)
    truncated = truncated_checkpoint(tmp_path / 'iter_2.pth')
    with pytest.raises(CheckpointFormatError, match=f"'{truncated}' is truncated or corrupted"):
        run_train(config, tmp_path / 'work', resume=truncated)
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'<html>404 Not Found</html>')
    with pytest.raises(CheckpointFormatError, match=f"'{garbage}' is not a PyTorch checkpoint"):
        run_train(config, tmp_path / 'work2', resume=str(garbage))


def test_testing_a_truncated_checkpoint_names_the_file(data, tmp_path):
    config = write_seg_config(tmp_path / 'seg.py', data)
    truncated = truncated_checkpoint(tmp_path / 'model.pth')
    with pytest.raises(CheckpointFormatError, match=f"'{truncated}' is truncated"):
        run_test(prepare_test_cfg(config, truncated, work_dir=str(tmp_path / 'work')))
    assert not (tmp_path / 'work').exists()  # said before the runner was built


def test_every_mmengine_checkpoint_load_goes_through_the_safe_loader(tmp_path):
    """``load_from``, ``resume`` and ``init_cfg`` all read through mmengine's CheckpointLoader,
    which mmrepvit points at ``load_checkpoint_file`` (weights_only, clear errors)."""
    model = torch.nn.Linear(2, 2)
    truncated = truncated_checkpoint(tmp_path / 'cut.pth')
    with pytest.raises(CheckpointFormatError, match='cut.pth'):
        mmengine_load_checkpoint(model, truncated)
    unsafe = tmp_path / 'unsafe.pth'
    torch.save({'state_dict': model.state_dict(), 'extra': shutil.copy}, unsafe)
    with pytest.raises(UnsafeCheckpointError, match='shutil.copy'):
        mmengine_load_checkpoint(model, str(unsafe))


def test_resume_from_a_checkpoint_whose_meta_config_is_code(data, tmp_path):
    """mmengine's resume would run ``meta['config']`` as Python: ``--resume`` refuses it."""
    config = write_seg_config(tmp_path / 'seg.py', data)
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'iter_2.pth'
    code = f"import os\nos.system('touch {marker}')"
    torch.save({'meta': {'iter': 2, 'epoch': 0, 'config': code}, 'state_dict': {}}, evil)
    with pytest.raises(ConfigTextError, match=r'\(meta\["config"\]\), line 1: `import os`'):
        run_train(config, tmp_path / 'work', resume=str(evil))
    assert not marker.exists()


# --- config typos --------------------------------------------------------------------------


@pytest.mark.parametrize('option, value, error, expected', [
    ('model.backbone.type', 'RepVit', KeyError,
     ["model.backbone.type='RepVit' is not a registered mmseg::model type",
      "Did you mean 'RepViT'"]),
    ('model.backbone.type', 'mmrepvit.RepVit', KeyError, ["Did you mean 'mmrepvit.RepViT'"]),
    ('optim_wrapper.optimizer.type', 'AdamWW', KeyError,  # mmengine: "None is not callable"
     ["optim_wrapper.optimizer.type='AdamWW' is not a registered mmseg::optimizer type",
      "'AdamW'"]),
    ('model.backbone.out_indice', [0, 1, 2, 3], TypeError,
     ["model.backbone.out_indice: RepViT has no argument 'out_indice'",
      "Did you mean 'out_indices'", 'RepViT takes: arch, out_indices, taps']),
    ('train_cfg.max_iter', 3, TypeError,
     ["train_cfg.max_iter: IterBasedTrainLoop has no argument 'max_iter'", "'max_iters'"]),
])
def test_misspelt_config_type_or_argument(data, tmp_path, option, value, error, expected):
    config = write_seg_config(tmp_path / 'seg.py', data)
    with pytest.raises(error) as info:
        run_train(config, tmp_path / 'work', {option: value})
    for text in expected:
        assert text in str(info.value)


# --- unreadable files ----------------------------------------------------------------------


@pytest.mark.parametrize('what, folder, damage', [
    ('image', 'images/training', 'garbage'),
    ('image', 'images/training', 'empty'),  # mmcv: a bare "(-215:Assertion failed) !buf.empty()"
    ('segmentation label map', 'annotations/training', 'truncated'),  # Pillow: no file name
])
def test_unreadable_file_is_named(own_data, tmp_path, what, folder, damage):
    bad = next(iter(sorted((own_data / 'ade' / folder).iterdir())))
    content = bad.read_bytes()
    bad.write_bytes({'garbage': b'not an image', 'empty': b'',
                     'truncated': content[:len(content) // 3]}[damage])
    config = write_seg_config(tmp_path / 'seg.py', own_data)
    with pytest.raises(UnreadableFileError, match=f"Cannot read {what} '{bad}'"):
        run_train(config, tmp_path / 'work')  # 6 iterations of 2 cover all 8 images


def test_detection_pipelines_get_the_checked_loader_too(own_data, tmp_path):
    from mmdet.registry import TRANSFORMS
    from mmengine.registry import init_default_scope
    cfg = prepare_train_cfg(write_det_config(tmp_path / 'det.py', own_data),
                            work_dir=str(tmp_path / 'work'))
    step = cfg.train_dataloader.dataset.pipeline[0]
    assert step.type == 'mmrepvit.CheckedLoadImageFromFile'
    init_default_scope('mmdet')
    bad = own_data / 'coco' / 'train2017' / '000003.jpg'
    bad.write_bytes(b'')
    with pytest.raises(UnreadableFileError, match=f"'{bad}': the file is empty"):
        TRANSFORMS.build(step)(dict(img_path=str(bad)))


# --- datasets without annotations ----------------------------------------------------------


def test_segmentation_folder_without_label_maps(own_data, tmp_path):
    labels = own_data / 'ade' / 'annotations' / 'training'
    config = write_seg_config(tmp_path / 'seg.py', own_data)
    (labels / '000005.png').unlink()
    with pytest.raises(DatasetAnnotationError,
                       match=r"1 of 8 images have no label map: '.*000005\.png'"):
        run_train(config, tmp_path / 'work')
    for png in labels.glob('*.png'):
        png.unlink()
    with pytest.raises(DatasetAnnotationError, match=f"has no annotations: '{labels}' holds no "
                       r'\*\.png label maps, while .* holds 8 \*\.jpg images'):
        run_train(config, tmp_path / 'work')


@pytest.mark.parametrize('damage, expected', [
    ('no annotations', r"instances_train2017\.json' has no annotations: its \"annotations\" "
                       'list is empty'),
    ('other classes', r"none of the \d+ annotations of .*instances_train2017\.json' is of the "
                      r"config's classes \('circle', 'triangle', 'square', 'star'\)"),
])
def test_coco_json_without_usable_annotations(own_data, tmp_path, damage, expected):
    ann_file = own_data / 'coco' / 'annotations' / 'instances_train2017.json'
    coco = json.loads(ann_file.read_text())
    if damage == 'no annotations':
        coco['annotations'] = []
    else:
        for category in coco['categories']:
            category['name'] = category['name'].upper()
    ann_file.write_text(json.dumps(coco))
    config = write_det_config(tmp_path / 'det.py', own_data)
    with pytest.raises(DatasetAnnotationError, match=expected):  # mmengine: "need at least one
        run_train(config, tmp_path / 'work')                    # array to concatenate"


# --- NaN / inf loss ------------------------------------------------------------------------


@HOOKS.register_module(force=True)
class PoisonWeightsHook(Hook):
    """Test-only: set every weight to inf before iteration ``at`` (1-based)."""

    def __init__(self, at):
        self.at = at

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.at:
            for p in runner.model.parameters():
                p.data.fill_(float('inf'))


def test_configs_carry_the_nan_guard():
    for path in ('configs/demo/fpn_repvit_m1_1_demo.py',
                 'configs/demo/maskrcnn_repvit_m1_1_demo.py',
                 'configs/retinanet_repvit_m1_1_coco.py'):
        hooks = load_config(str(REPO / path)).custom_hooks
        assert dict(type='mmrepvit.NaNGuardHook') in hooks, path


@pytest.mark.parametrize('at', [3, 1])
def test_nan_loss_stops_training_naming_iteration_and_last_checkpoint(data, tmp_path, at):
    config = write_seg_config(tmp_path / 'seg.py', data, max_iters=6, interval=2)
    work = tmp_path / 'work'
    hooks = [dict(type='mmrepvit.NaNGuardHook'), dict(type='PoisonWeightsHook', at=at)]
    with pytest.raises(NonFiniteLossError) as info:
        run_train(config, work, {'custom_hooks': hooks})
    message = str(info.value)
    assert f'the loss is not finite at iteration {at} (' in message
    assert 'loss=nan' in message or 'loss=inf' in message
    if at == 3:
        assert f"The last good checkpoint is '{work / 'iter_2.pth'}'" in message
        assert f'--resume {work / "iter_2.pth"}' in message
    else:
        assert 'No checkpoint had been saved' in message
    # nothing trained on garbage was saved
    assert sorted(p.name for p in work.glob('iter_*.pth')) == (['iter_2.pth'] if at == 3
                                                                else [])
