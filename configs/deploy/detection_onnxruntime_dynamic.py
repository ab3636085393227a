# mmdeploy config: a detector without masks (the retinanet_*.py configs) to ONNX for ONNX
# Runtime on CPU; one image per run, dynamic height and width; outputs dets (1, K, 5) and
# labels (1, K) as for Mask R-CNN (./instance-seg_onnxruntime_dynamic.py), without masks.
_base_ = ['./_onnxruntime_end2end.py']

onnx_config = dict(
    output_names=['dets', 'labels'],
    dynamic_axes=dict(
        input={2: 'height', 3: 'width'},
        dets={1: 'num_dets'},
        labels={1: 'num_dets'}))
codebase_config = dict(task='ObjectDetection')
