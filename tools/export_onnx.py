#!/usr/bin/env python
"""Export a fused RepViT backbone, or a whole fused detector / segmentor, to ONNX (opset 17,
dynamic height and width), then run it under ONNX Runtime at each --check-size (two or more)
and compare with PyTorch; exit status 1 if the check fails.

  python tools/export_onnx.py m1_1 repvit_m1_1.onnx
  python tools/export_onnx.py configs/maskrcnn_repvit_m1_1_coco.py maskrcnn_m1_1.onnx \\
      --checkpoint fused_or_plain.pth --check-size 800 1344 --check-size 480 640
  python tools/export_onnx.py configs/fpn_repvit_m1_1_ade20k.py fpn_m1_1.onnx \\
      --check-size 512 512 --check-size 320 448

Backbone: feature maps within --tolerance. Detector (mmdeploy, `make install-deploy`): the
whole test step compared detection by detection. Segmentor: its whole test step's logits within
--tolerance. --int8 PATH also writes an int8 copy calibrated on the config's val set (its
accuracy: `python tools/test.py CONFIG PATH`). Weights: random unless --checkpoint (fused or
plain). Details: docs/deployment.md, "Export".
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    from tools._args import export_parser
    parser = export_parser(__doc__, 'the .onnx file to write')
    parser.add_argument('--size', nargs=2, type=int, metavar=('H', 'W'),
                        help='the example input size traced for export (default: 224 224 '
                        'for a backbone, else the first --check-size)')
    parser.add_argument('--check-size', nargs=2, type=int, action='append', metavar=('H', 'W'),
                        help='sizes to compare at, two or more (repeatable; default: 224 224 '
                        'and 320 448 for a backbone, 800 1344 and 480 640 for a detector, '
                        '512 512 and 320 448 for a segmentor)')
    parser.add_argument('--deploy-config', help='detectors: the mmdeploy config (default: '
                        'configs/deploy/instance-seg_* or detection_*_onnxruntime_dynamic.py)')
    parser.add_argument('--reduce-range', action=argparse.BooleanOptionalAction,
                        help='--int8: 7-bit weights, which int8 kernels without VNNI need '
                        'to not saturate (default: on where this CPU has no avx512_vnni / '
                        'avx_vnni / amx_int8, off otherwise; recorded in the file)')
    parser.add_argument('--tolerance', type=float, default=1e-4)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmrepvit.model_variants import target_kind
    kind = target_kind(args.target)
    sizes = [tuple(s) for s in args.check_size] if args.check_size else None
    if sizes is not None and len(set(sizes)) < 2:
        sys.exit('give two or more different --check-size: a dynamic-shape export must be '
                 'checked at a size other than the one it was traced at')
    if kind == 'backbone':
        if args.int8:
            sys.exit('--int8 takes a detector or segmentor config: the calibration images '
                     'come from its val set (int8 backbones: tools/benchmark.py --variants '
                     'onnxruntime-int8)')
        report = export_backbone(args, sizes or [(224, 224), (320, 448)])
    else:
        report = export_whole_model(args, sizes)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(('PASS' if report['passed'] else 'FAIL') + f' (tolerance {args.tolerance:g})')
    if not report['passed']:
        sys.exit(1)
    return report


def export_backbone(args, sizes):
    from mmrepvit.deployment.export import export_and_check
    report = export_and_check(args.target, args.out, tuple(args.size or (224, 224)), sizes,
                              args.cfg_options, args.threads, args.checkpoint)
    worst = max(c['max_abs_diff'] for c in report['checks'])
    report['tolerance'], report['passed'] = args.tolerance, worst <= args.tolerance
    if not args.json:
        print(f'wrote {args.out} (opset {report["opset"]}, dynamic H/W, '
              f'outputs {", ".join(report["outputs"])})')
        for c in report['checks']:
            print(f'  {c["size"][0]}x{c["size"][1]}: ONNX Runtime vs PyTorch max abs diff '
                  f'{c["max_abs_diff"]:.2e} (outputs up to {c["max_abs_output"]:.2f}), '
                  f'shapes {c["output_shapes"]}')
    return report


def export_whole_model(args, sizes):
    import torch

    from mmrepvit.deployment.export import export_model
    torch.set_num_threads(args.threads)  # PyTorch's side of the check; ONNX Runtime's too
    report = export_model(args.target, args.out, args.checkpoint,
                          tuple(args.size) if args.size else None, sizes, args.deploy_config,
                          args.cfg_options, args.threads, int8_path=args.int8,
                          calib_images=args.calib_images, reduce_range=args.reduce_range)
    if report['kind'] == 'mmseg':
        worst = max(c['max_abs_diff'] for c in report['checks'])
        report['passed'] = report['passed'] and worst <= args.tolerance
    report['tolerance'] = args.tolerance
    if args.json:
        return report
    via = 'mmdeploy, ' + os.path.basename(report['deploy_config']) \
        if report['kind'] == 'mmdet' else 'mmrepvit exporter'
    print(f'wrote {args.out} ({via}; opset {report["opset"]}, dynamic H/W, '
          f'outputs {report["outputs"]})')
    print('ONNX Runtime vs PyTorch, whole test step (data preprocessor + network + '
          'post-processing):')
    print_checks(report['kind'], report['checks'], report['tolerances'])
    if report['by_design']:
        print('What may differ (docs/deployment.md):')
        for line in report['by_design']:
            print(f'  - {line}')
    if report['int8']:
        print_int8(args, report)
    return report


def print_checks(kind, checks, tol):
    for c in checks:
        size = f'{c["size"][0]}x{c["size"][1]}'
        if kind == 'mmseg':
            print(f'  {size}: logits max abs diff {c["max_abs_diff"]:.2e} (logits up to '
                  f'{c["max_abs_logit"]:.2f}), predicted class agrees on '
                  f'{100 * c["pixels_agree"]:.2f}% of pixels')
            continue
        masks = '' if c['min_mask_iou'] is None else \
            f', smallest mask IoU {c["min_mask_iou"]:.4f}'
        print(f'  {size}: {c["pytorch"]} detections in PyTorch, {c["onnx"]} in ONNX Runtime; '
              f'{c["agree"]} agree (same label, box within {tol["box_px"]:g} px, score '
              f'within {tol["score"]:g}), the best {c["leading"]} in order; largest '
              f'differences of those: box {c["max_box_diff"]:.1e} px, score '
              f'{c["max_score_diff"]:.1e}{masks}')


def print_int8(args, report):
    int8 = report['int8']
    ops = ', '.join(f'{n} {op}' for op, n in int8['int8_ops'].items()) or 'none'
    left = ', '.join(f'{n} {op}' for op, n in int8['float_ops'].items()) or 'none'
    print(f'wrote {int8["path"]} (int8, calibrated on {int8["calibration_inputs"]} val '
          f'images; {int8["fused_gelus"]} GELUs as one op; {int8["weights"]}): in int8 '
          f'{ops}; left in float32: {left}')
    vs = int8['vs_float']
    if 'pixels_agree' in vs:
        print(f'int8 vs float32 on {vs["images"]} of those images: predicted class agrees on '
              f'{100 * vs["pixels_agree"]:.2f}% of pixels, logits differ by up to '
              f'{vs["max_abs_logit_diff"]:.2f}')
    else:
        print(f'int8 vs float32 on {vs["images"]} of those images: {vs["also_made"]} of the '
              f'{vs["detections"]} float detections scoring >= {vs["min_score"]:g} made in '
              f'int8 too (same label, box IoU >= {vs["min_iou"]:g}), scores differing by up '
              f'to {vs["max_score_diff"]:.3f}')
    print(f'Its accuracy: python tools/test.py {args.target} {int8["path"]}')


if __name__ == '__main__':
    main()
