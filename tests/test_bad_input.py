"""Bad input fails clearly: damaged checkpoints, misspelt config types and arguments,
unreadable images, label maps that do not fit, datasets without or with broken annotations,
a schedule that trains nothing, and a loss that turns NaN."""
import json
import shutil

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS, init_default_scope
from mmengine.runner import load_checkpoint as mmengine_load_checkpoint
from PIL import Image
from tiny_runs import REPO, make_data, write_det_config, write_seg_config

from mmrepvit.apis import load_config, prepare_test_cfg, prepare_train_cfg, train
from mmrepvit.apis import test as run_test
from mmrepvit.checkpoint import CheckpointFormatError, UnsafeCheckpointError
from mmrepvit.config import ConfigTextError
from mmrepvit.datasets import DatasetAnnotationError, LabelMapError, UnreadableFileError
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
    ('image', 'images/training', 'half'),  # OpenCV: the top half, "Premature end of JPEG file"
    ('segmentation label map', 'annotations/training', 'truncated'),  # Pillow: no file name
])
def test_unreadable_file_is_named(own_data, tmp_path, what, folder, damage):
    bad = next(iter(sorted((own_data / 'ade' / folder).iterdir())))
    content = bad.read_bytes()
    bad.write_bytes({'garbage': b'not an image', 'half': content[:len(content) // 2],
                     'truncated': content[:len(content) // 3]}[damage])
    config = write_seg_config(tmp_path / 'seg.py', own_data)
    with pytest.raises(UnreadableFileError, match=f"Cannot read {what} '{bad}'") as info:
        run_train(config, tmp_path / 'work')  # 6 iterations of 2 cover all 8 images
    if damage == 'half':
        assert 'the JPEG is truncated' in str(info.value)


def test_empty_files_stop_training_before_it_starts_naming_every_one(own_data, tmp_path):
    ade = own_data / 'ade'
    bad = [ade / 'images/training/000002.jpg', ade / 'images/training/000007.jpg',
           ade / 'annotations/validation/000003.png']
    for path in bad:
        path.write_bytes(b'')
    config = write_seg_config(tmp_path / 'seg.py', own_data)
    with pytest.raises(UnreadableFileError) as info:  # mmcv: the first one sampled, or at the
        run_train(config, tmp_path / 'work')          # validation after training
    assert str(info.value).startswith(
        'The datasets list 3 files that cannot be read:\n'
        f'  train: {bad[0]} (empty: 0 bytes)\n  train: {bad[1]} (empty: 0 bytes)\n'
        f'  val: {bad[2]} (empty: 0 bytes)\n')
    assert not list((tmp_path / 'work').glob('iter_*.pth'))  # no training was done


# --- label maps that do not fit their images or classes ------------------------------------


def untrained_checkpoint(config, path):
    """The weights of the config's model as built: enough to run tools/test.py's loop."""
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    torch.save({'state_dict': MODELS.build(load_config(config).model).state_dict()}, path)
    return str(path)


def damage_label_map(path, damage):
    label = np.array(Image.open(path))
    if damage == 'class 200':
        label[:8, :8] = 200
    else:
        label = np.pad(label, ((0, 16), (0, 0)))
    Image.fromarray(label).save(path)


@pytest.mark.parametrize('damage, split, expected', [
    # mmseg: testing scores the pixels as misses of the predicted class (mIoU 65.65 -> 55.25
    # on the demo), training dies with "IndexError: Target 199 is out of bounds"
    ('class 200', 'validation',
     r"The label map '{bad}' holds pixel values 200, which are no class of the dataset: valid "
     r'are 1..5 \(the 5 classes: reduce_zero_label=True subtracts 1\), 0 and 255 \(ignored\)'),
    # mmseg: training stretches the map to the image's crop (or fails to stack the batch),
    # testing fails in the IoU metric; neither names the file
    ('size', 'training', r"The label map '{bad}' is 64x80 pixels, but its image '{image}' is "
                         r'64x64'),
])
def test_label_map_that_does_not_fit_is_named(own_data, tmp_path, damage, split, expected):
    """Each damage where mmseg is silent about it; both loaders check both."""
    config = write_seg_config(tmp_path / 'seg.py', own_data)
    bad = own_data / 'ade' / 'annotations' / split / '000003.png'
    damage_label_map(bad, damage)
    message = expected.format(bad=bad, image=own_data / 'ade' / 'images' / split / '000003.jpg')
    with pytest.raises(LabelMapError, match=message):
        if split == 'training':
            run_train(config, tmp_path / 'work')
        else:
            checkpoint = untrained_checkpoint(config, tmp_path / 'model.pth')
            run_test(prepare_test_cfg(config, checkpoint, work_dir=str(tmp_path / 'test')))


@pytest.mark.parametrize('damage, expected', [
    # json: "Expecting ',' delimiter: line 1 column 2474 (char 2473)", no file named
    ('truncated', r"cannot be loaded: '.*instances_train2017\.json' is not valid JSON: "
                  r".* at line 1, column \d+ \(character \d+\); the file has \d+ bytes"),
    # mmdet: "KeyError: 'bbox'", then diagnosed as "every image was filtered out"
    ('no bbox', r'annotations\[0\] \(id 1\) has no "bbox" \(expected \[x, y, width, '
                r'height\]: 4 numbers\)'),
    # mmdet: "ValueError: not enough values to unpack"; unknown categories are dropped silently
    ('short bbox', r'2 malformed entries: annotations\[0\] \(id 1\): "bbox" is \[1, 2, 3\] '
                   r'\(expected .*annotations\[1\] \(id 2\): "category_id" is 99 \(expected '
                   r'one of the ids of the "categories": 1, 2, 3, 4\)'),
])
def test_coco_json_truncated_or_malformed_is_named(own_data, tmp_path, damage, expected):
    ann_file = own_data / 'coco' / 'annotations' / 'instances_train2017.json'
    text = ann_file.read_text()
    coco = json.loads(text)
    if damage == 'truncated':
        text = text[:len(text) // 2]
    elif damage == 'no bbox':
        del coco['annotations'][0]['bbox']
    else:
        coco['annotations'][0]['bbox'] = [1, 2, 3]
        coco['annotations'][1]['category_id'] = 99
    ann_file.write_text(text if damage == 'truncated' else json.dumps(coco))
    config = write_det_config(tmp_path / 'det.py', own_data)
    with pytest.raises(DatasetAnnotationError, match=expected):
        run_train(config, tmp_path / 'work')


# --- a schedule that trains nothing --------------------------------------------------------


@pytest.mark.parametrize('value', [-5, 0])
def test_training_nothing_is_a_config_error(data, tmp_path, value):
    config = write_seg_config(tmp_path / 'seg.py', data)  # mmengine: trains nothing, exit 0
    with pytest.raises(ValueError, match=f'Config error: train_cfg.max_iters={value}: a '
                       'training run needs max_iters >= 1'):
        run_train(config, tmp_path / 'work', {'train_cfg.max_iters': value})


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


def test_demo_val_images_of_two_sizes_are_refused_before_a_detector_program(own_data,
                                                                            tmp_path):
    """A detector program takes one aspect ratio: the demo's program stage refuses val
    images of several sizes, naming them, before exporting anything."""
    from mmrepvit.demo.run import _data_options, program_stage
    image = own_data / 'coco' / 'val2017' / '000002.jpg'
    Image.open(image).resize((80, 64)).save(image)
    with pytest.raises(ValueError, match=r'sizes \[\(64, 64\), \(64, 80\)\]: a detector '):
        program_stage('maskrcnn', 'fused.pth', str(tmp_path / 'maskrcnn.pte'), str(tmp_path),
                      _data_options(str(own_data), 'maskrcnn'))
    assert not (tmp_path / 'maskrcnn.pte').exists()


@pytest.mark.parametrize('argv, message', [
    (['m1_1', 'x.pte', '--fixed'], '--fixed takes a segmentation or detection config'),
    (['configs/retinanet_repvit_m1_1_coco.py', 'x.pte', '--fixed', '--max-size', '900'],
     '--fixed takes no --min-size / --max-size'),
    (['m1_1', 'x.pte', '--int8', 'y.pte'], '--int8 takes a segmentation or detection config'),
    (['configs/fpn_repvit_m1_1_ade20k.py', 'x.pte', '--classifier'],
     '--classifier takes a backbone'),
    (['configs/retinanet_repvit_m1_1_coco.py', 'x.pte', '--check-size', '64', '64'],
     '--check-size and --time do not take a detection config')])
def test_export_executorch_refuses_an_option_its_model_does_not_take(argv, message, tmp_path):
    """Named, before anything is exported or set (the option would otherwise be ignored)."""
    from test_analysis import load_tool
    threads = torch.get_num_threads()
    with pytest.raises(SystemExit, match=message):
        load_tool('export_executorch').main(argv[:1] + [str(tmp_path / argv[1])] + argv[2:] +
                                            ['--threads', str(threads + 1)])
    assert not list(tmp_path.iterdir()) and torch.get_num_threads() == threads
