#!/usr/bin/env python
"""Test a detector (COCO AP) or segmentor (mIoU) checkpoint; flags as mmdet's tools/test.py,
plus --fuse to evaluate the re-parameterised (deployed) model. An exported .onnx file
(tools/export_onnx.py, float or int8) in place of the checkpoint is tested in ONNX Runtime,
or in OpenVINO with --runtime openvino (--precision f32 / bf16 / int8); an ExecuTorch app
program (.pte, tools/export_executorch.py) with --runtime executorch."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    from tools import _args
    parser = argparse.ArgumentParser(description='Test a RepViT/MoCoViT detector or segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file (ordinary or fused), or a model '
                        'exported from this config (.onnx, .xml, .pte)')
    parser.add_argument('--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument('--out', help='detection: dump results to this .pkl; '
                        'segmentation: save the predicted maps in this dir')
    parser.add_argument('--show-dir', help='save pictures of the predictions in this dir')
    parser.add_argument('--fuse', action='store_true',
                        help='re-parameterise the model (RepViT blocks, Conv-BN) before testing')
    _args.add_runtime_arguments(parser)
    _args.add_cfg_options(parser)
    _args.add_launcher_arguments(parser)
    args = _args.parse_launched(parser, argv)
    from mmrepvit.apis import prepare_test_cfg, test
    cfg = prepare_test_cfg(args.config, args.checkpoint, work_dir=args.work_dir, out=args.out,
                           show_dir=args.show_dir, fuse=args.fuse,
                           cfg_options=args.cfg_options, launcher=args.launcher)
    return test(cfg, runtime=args.runtime, precision=args.precision)


if __name__ == '__main__':
    main()
