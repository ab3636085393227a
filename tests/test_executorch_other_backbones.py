"""App programs of the models with the other backbones: the MoCoViT and GhostNet RetinaNets and
the MoCoViT Semantic FPN (random weights, RetinaNet neck and head narrowed), exported as
ExecuTorch programs and run by executorch.runtime alone against the PyTorch model on an image
as an app holds it (uint8 RGB HWC): the backbone is the part that differs from the RepViT
models' programs (tests/test_executorch*.py)."""
import pytest

from mmrepvit.deployment.compare import BOX_TOL
from mmrepvit.deployment.executorch_detector import export_detector_program
from mmrepvit.deployment.executorch_program import export_segmentor_program
from mmrepvit.deployment.export import load_model

# exports programs (minutes): `make test-slow`, not `make test` (docs/testing.md)
pytestmark = [pytest.mark.usefixtures('one_torch_thread'), pytest.mark.slow]
NARROW_RETINANET = {
    'model.backbone.init_cfg': None, 'model.neck.out_channels': 32,
    'model.bbox_head.in_channels': 32, 'model.bbox_head.feat_channels': 32,
    'model.bbox_head.stacked_convs': 2, 'model.bbox_head.num_classes': 4,
    'test_dataloader.dataset.pipeline.1.scale': (160, 128),
    'test_dataloader.dataset.metainfo': dict(classes=('circle', 'triangle', 'square', 'star'))}


@pytest.mark.parametrize('config', ['configs/retinanet_mocovit_1_0x_coco.py',
                                    'configs/retinanet_ghostnet_1_0x_coco.py'])
def test_retinanet_program_detects_what_mmdet_detects(config, tmp_path):
    """One size (the RepViT programs' tests cover the others): every detection agrees with
    mmdet's on the same network input (label, box within 1e-3 px, score within 1e-4), the
    NMS converged."""
    model = load_model(config, cfg_options=NARROW_RETINANET)
    report = export_detector_program(config, str(tmp_path / 'retinanet.pte'),
                                     cfg_options=NARROW_RETINANET, model=model,
                                     export_size=(96, 120), nms_candidates=300, fixed=True)
    check, = report['checks']
    assert check['converged'] == 1 and check['pytorch'] > 10, check
    assert check['onnx'] == check['pytorch'] == check['agree'] == check['leading'], check
    assert check['max_box_diff'] <= BOX_TOL, check


def test_mocovit_semantic_fpn_program_gives_pytorchs_classes(tmp_path):
    """float32, one size (the RepViT program's tests cover dynamic sizes): the class map of
    PyTorch's same steps."""
    config = 'configs/fpn_mocovit_1_0x_ade20k.py'
    report = export_segmentor_program(config, str(tmp_path / 'fpn.pte'),
                                      export_size=(64, 64), min_size=64, max_size=64,
                                      check_sizes=[(64, 64)],
                                      cfg_options={'model.backbone.init_cfg': None})
    check, = report['checks']
    assert check['size'] == [64, 64] and check['agree'] >= 0.999, check
