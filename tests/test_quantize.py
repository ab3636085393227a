"""int8 deployment: static quantisation of the exported graphs (``mmrepvit.deployment.quantize``).

int8 changes outputs, so these tests check what must hold whatever the weights: every
convolution and matrix product of the graph runs in int8 in ONNX Runtime (none left in
float32, which is where the speed comes from), the calibration reads the config's val images,
the int8 graph keeps dynamic input sizes and the deployed model's interface, and it follows
the float graph closely. Its accuracy on a trained model is measured with tools/test.py
(docs/deployment.md), not here."""

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from test_deployment import FPN, MASK_RCNN, demo_data_options, plain_model

from mmrepvit.deployment import open_model
from mmrepvit.deployment.compare import compare_graphs
from mmrepvit.deployment.export import export_int8, export_model
from mmrepvit.deployment.quantize import (
    dataset_feeds,
    default_reduce_range,
    fuse_gelu,
    int8_coverage,
    own_initializers,
    quantize_onnx,
)
from mmrepvit.deployment.runtime import ort_session
from mmrepvit.model_variants import load_target_config, synthetic_batch

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def float_convs(path):
    return sum(n.op_type == 'Conv' for n in onnx.load(path).graph.node)


def test_own_initializers_gives_every_conv_its_own_weights():
    """Two Convs reading one weight (one directly, one through an Identity, as torch's
    exporter writes deduplicated tensors) and one bias: each gets its own copies; the graph
    computes the same."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((2, 2, 3, 3)).astype(np.float32), 'w')
    bias = numpy_helper.from_array(np.zeros(2, np.float32), 'b')
    nodes = [helper.make_node('Identity', ['w'], ['w_alias']),
             helper.make_node('Conv', ['x', 'w', 'b'], ['y1'], name='first', pads=[1] * 4),
             helper.make_node('Conv', ['y1', 'w_alias', 'b'], ['y'], name='second',
                              pads=[1] * 4)]
    graph = helper.make_graph(
        nodes, 'shared', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 2, 5, 5])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 2, 5, 5])],
        [weight, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    before = model.SerializeToString()
    fixed = own_initializers(model)
    convs = [n for n in fixed.graph.node if n.op_type == 'Conv']
    reads = [name for n in convs for name in n.input[1:]]
    assert len(set(reads)) == 4, reads  # two weights, two biases, none shared
    constants = {t.name for t in fixed.graph.initializer}
    assert set(reads) <= constants
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    run = [ort_session(b).run(None, {'x': x})[0]
           for b in (before, fixed.SerializeToString())]
    np.testing.assert_array_equal(run[0], run[1])


def test_reduce_range_follows_the_cpu_and_is_recorded(tmp_path):
    """Without VNNI the int8 weights are 7-bit (|q| <= 64: pair sums of u8 x s8 stay within
    16 bits), with VNNI 8-bit (up to 127); the file's metadata says which and on what CPU."""
    assert default_reduce_range(frozenset({'avx2'})) is True
    for flag in ('avx512_vnni', 'avx_vnni', 'amx_int8'):
        assert default_reduce_range(frozenset({'avx2', flag})) is False
    conv = torch.nn.Conv2d(3, 8, 3).eval()
    path = str(tmp_path / 'conv.onnx')
    torch.onnx.export(conv, (torch.randn(1, 3, 8, 8), ), path, input_names=['x'],
                      opset_version=17, dynamo=False)
    g = torch.Generator().manual_seed(0)
    feeds = [{'x': torch.rand(1, 3, 8, 8, generator=g).numpy()} for _ in range(2)]
    for reduce_range, largest in ((True, 64), (False, 127)):
        dst = str(tmp_path / f'conv_int8_{reduce_range}.onnx')
        report = quantize_onnx(path, dst, feeds, reduce_range=reduce_range)
        assert report['reduce_range'] is reduce_range
        model = onnx.load(dst)
        weights = [numpy_helper.to_array(t) for t in model.graph.initializer
                   if t.data_type == TensorProto.INT8 and t.dims and len(t.dims) == 4]
        assert len(weights) == 1
        assert int(np.abs(weights[0].astype(np.int32)).max()) == largest
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta['mmrepvit.reduce_range'] == str(reduce_range)
        assert ('7-bit' if reduce_range else '8-bit') in meta['mmrepvit.quantization']
        assert meta['mmrepvit.quantized_on']


def test_fuse_gelu_rewrites_exported_gelus_into_one_op(tmp_path):
    """torch exports an exact GELU as five ops; after ``fuse_gelu`` each is one
    com.microsoft.Gelu, computing the same (a tanh-approximate GELU is left alone)."""
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 4, 1)

        def forward(self, x):
            y = torch.nn.functional.gelu(self.conv(x))
            return torch.nn.functional.gelu(y) + torch.nn.functional.gelu(y, approximate='tanh')

    path = str(tmp_path / 'gelu.onnx')
    x = torch.randn(1, 2, 5, 5)
    torch.onnx.export(Net().eval(), (x, ), path, input_names=['x'], opset_version=17,
                      dynamo=False)
    model = onnx.load(path)
    assert sum(n.op_type == 'Erf' for n in model.graph.node) == 2
    assert fuse_gelu(model) == 2
    ops = [n.op_type for n in model.graph.node]
    assert ops.count('Gelu') == 2 and 'Erf' not in ops and 'Tanh' in ops
    feed = {'x': x.numpy()}
    expected = ort_session(path).run(None, feed)[0]
    got = ort_session(model.SerializeToString()).run(None, feed)[0]
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    return tmp_path_factory.mktemp('int8')


def test_int8_segmentor_runs_in_int8_and_follows_the_float_graph(demo_run, work):
    """Random weights with trained-like norms, calibrated on the demo's val images: every
    Conv runs as QLinearConv, the graph still takes other input sizes, and its predicted
    logits follow the float graph's."""
    options = demo_data_options(demo_run, 'fpn')
    model, _ = plain_model(FPN, work / 'fpn.pth')
    report = export_model(FPN, str(work / 'fpn.onnx'), model=model, export_size=(128, 128),
                          check_sizes=[], cfg_options=options,
                          int8_path=str(work / 'fpn_int8.onnx'), calib_images=8)
    int8 = report['int8']
    assert int8['calibration_inputs'] == 3  # all the tiny val set has
    assert int8['fused_gelus'] > 0  # RepViT's channel mixers
    assert int8['float_ops'] == {}, int8
    assert int8['int8_ops']['QLinearConv'] == float_convs(report['path'])
    assert int8['vs_float']['images'] == 3
    # random weights give small, nearly tied logits (up to ~0.7 here), so classes flip where a
    # trained model's would not: what must hold is that the int8 logits track the float ones
    vs = int8['vs_float']
    assert vs['pixels_agree'] >= 0.75, vs
    feed = dataset_feeds(load_target_config(FPN, options), ['input'], 1)[0]
    a, b = (ort_session(p).run(None, feed)[0].ravel() for p in (report['path'], int8['path']))
    assert np.corrcoef(a, b)[0, 1] >= 0.97, np.corrcoef(a, b)
    meta = {p.key: p.value for p in onnx.load(int8['path']).metadata_props}
    assert meta['mmrepvit.kind'] == 'mmseg' and 'int8' in meta['mmrepvit.quantization']
    # the deployed model's interface, at a size it was neither exported nor calibrated at
    deployed = open_model(FPN, int8['path'])
    with torch.no_grad():
        sample = deployed.test_step(synthetic_batch('mmseg', (96, 160)))[0]
    assert sample.seg_logits.data.shape == (5, 96, 160)
    assert sample.pred_sem_seg.data.shape == (1, 96, 160)


@pytest.mark.slow  # a detector exported and calibrated: make test-slow
def test_int8_detector_runs_every_conv_and_gemm_in_int8(demo_run, work):
    """The demo Mask R-CNN with the COCO configs' neck (no BatchNorm): its freshly initialised
    neck, RPN and mask head convs all have zero biases, which torch's exporter stores once;
    without ``own_initializers`` ONNX Runtime keeps 12 of its Convs in float32. NMS, RoiAlign
    and the box arithmetic stay float."""
    options = dict(demo_data_options(demo_run, 'maskrcnn'), **{'model.neck.norm_cfg': None})
    model, _ = plain_model(MASK_RCNN, work / 'mrcnn.pth', options)
    path = export_model(MASK_RCNN, str(work / 'mrcnn.onnx'), model=model,
                        export_size=(160, 160), check_sizes=[], cfg_options=options)['path']
    assert sum(n.op_type == 'Identity' for n in onnx.load(path).graph.node) > 2  # shared
    report = export_int8(MASK_RCNN, path, str(work / 'mrcnn_int8.onnx'), calib_images=3,
                         cfg_options=options)
    assert report['float_ops'] == {}, report
    assert report['int8_ops']['QLinearConv'] == float_convs(path)
    assert report['int8_ops']['QGemm'] >= 2  # the box head's shared fully connected layers
    ops = {n.op_type for n in onnx.load(report['path']).graph.node}
    assert {'NonMaxSuppression', 'RoiAlign'} <= ops
    # random weights score nothing >= 0.3 (the report's cut) and their scores are nearly tied,
    # so int8 rounding reorders them (27 of 60 made alike here; the trained demo model's
    # accuracy in int8: docs/deployment.md); a quantisation that lost the signal would make
    # next to none alike
    feeds = dataset_feeds(load_target_config(MASK_RCNN, options), ['input', 'img_shape'], 3)
    vs = compare_graphs(path, report['path'], feeds, min_score=0.0)
    assert vs['detections'] > 0 and vs['also_made'] >= 0.25 * vs['detections'], vs
    deployed = open_model(load_target_config(MASK_RCNN, options), report['path'])
    with torch.no_grad():
        sample = deployed.test_step(synthetic_batch('mmdet', (128, 192)))[0]
    found = sample.pred_instances
    assert len(found) > 0 and found.masks.shape[1:] == (128, 192)
    assert (found.bboxes[:, 2] <= 192).all() and (found.bboxes[:, 3] <= 128).all()


def test_int8_coverage_reports_float_convs_left(tmp_path):
    """What the speed depends on is visible: a graph quantised but for its Conv reports it."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((2, 2, 1, 1)).astype(np.float32), 'w')
    graph = helper.make_graph(
        [helper.make_node('Conv', ['x', 'w'], ['y'])], 'plain',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 2, 4, 4])], [weight])
    path = str(tmp_path / 'plain.onnx')
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)]), path)
    assert int8_coverage(path) == dict(int8_ops={}, float_ops={'Conv': 1})


def test_calibration_without_the_val_set_names_the_missing_path(tmp_path):
    from mmrepvit.datasets import DatasetNotFoundError
    missing = str(tmp_path / 'no_ade') + '/'
    cfg = load_target_config(FPN, {'val_dataloader.dataset.data_root': missing})
    with pytest.raises(DatasetNotFoundError, match='no_ade'):
        dataset_feeds(cfg, ['input'], 4)
    with pytest.raises(ValueError, match='0 calibration images'):
        dataset_feeds(cfg, ['input'], 0)


def test_calibration_session_takes_the_callers_threads_without_spinning(monkeypatch):
    """onnxruntime's calibrator would open its session on every core with spinning threads
    (which starved the other test process here): inside ``calibration_threads`` it gets the
    given thread count and no spinning; afterwards the calibrator is as it was."""
    import onnxruntime as ort
    from onnxruntime.quantization import calibrate

    from mmrepvit.deployment.quantize import calibration_threads
    original = calibrate.CalibraterBase.create_inference_session
    seen = {}

    def session(path, options, providers):
        seen.update(threads=options.intra_op_num_threads,
                    spinning=options.get_session_config_entry('session.intra_op.allow_spinning'))

    class Calibrator:
        augmented_model_path, execution_providers = 'augmented.onnx', ['CPUExecutionProvider']

    monkeypatch.setattr(ort, 'InferenceSession', session)
    with calibration_threads(1):
        calibrate.CalibraterBase.create_inference_session(Calibrator())
    assert seen == dict(threads=1, spinning='0')
    assert calibrate.CalibraterBase.create_inference_session is original
