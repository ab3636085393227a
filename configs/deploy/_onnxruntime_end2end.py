# What the detector deploy configs in this folder share (mmdeploy 1.3 config keys).
#
# Post-processing: mmdeploy reads the NMS IoU, score threshold and detections per image from the
# model's own test_cfg where it has them, and the values below only where it has not. They are
# chosen so that mmdeploy adds no limit of its own that mmdet does not have:
#   score_threshold=0.0   the RPN has no score threshold in mmdet (mmdeploy's default, 0.05,
#                         would drop low-scoring proposals);
#   pre_top_k=-1          no extra top-k before NMS (mmdet has none beyond each head's nms_pre);
#   max_output_boxes_per_class=1000
#                         >= every head's max_per_img here, so the per-class cap never binds.
# Where mmdeploy's rewrites still differ from mmdet (one RPN NMS over all levels, the best
# class's box for every class, per-anchor top-k in dense heads), this project's export puts
# mmdet's behaviour back: mmrepvit.deployment.export.DetectorWithImageShape, docs/deployment.md.
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=17,  # RoiAlign's half_pixel mode (mmcv's aligned=True) needs opset >= 16
    save_file='end2end.onnx',
    # the padded, normalised image and its unpadded size (int64 [h, w]): boxes are clipped to
    # the image as in mmdet (mmrepvit.deployment.export.DetectorWithImageShape)
    input_names=['input', 'img_shape'],
    input_shape=None,
    optimize=False)  # mmdeploy's graph passes need its compiled extension (not in the wheel)
codebase_config = dict(
    type='mmdet',
    model_type='end2end',
    post_processing=dict(
        score_threshold=0.0,
        confidence_threshold=0.0,
        iou_threshold=0.5,
        max_output_boxes_per_class=1000,
        pre_top_k=-1,
        keep_top_k=100,
        background_label_id=-1,
        export_postprocess_mask=False))
backend_config = dict(type='onnxruntime')
