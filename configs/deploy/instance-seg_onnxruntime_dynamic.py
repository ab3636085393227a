# mmdeploy config: a Mask R-CNN (any of this project's maskrcnn_*.py configs) to ONNX for
# ONNX Runtime on CPU. One image per run (the wrapper loops over a batch), dynamic height and
# width, outputs in mmdeploy's end2end layout:
#   dets (1, K, 5): x1, y1, x2, y2, score in network-input pixels (clipped to img_shape, the
#   second input: the image's size before padding); labels (1, K);
#   masks (1, K, 28, 28): the label's mask probabilities, pasted by mmrepvit's wrapper.
# Used by `python tools/export_onnx.py CONFIG OUT.onnx` (mmrepvit.deployment.export_model).
_base_ = ['./_onnxruntime_end2end.py']

onnx_config = dict(
    output_names=['dets', 'labels', 'masks'],
    dynamic_axes=dict(
        input={2: 'height', 3: 'width'},
        dets={1: 'num_dets'},
        labels={1: 'num_dets'},
        masks={1: 'num_dets'}))
codebase_config = dict(task='InstanceSegmentation')
