#!/usr/bin/env python
"""Export a fused RepViT backbone, or a fused segmentor (image -> logits at the image's size),
to ONNX (opset 17, dynamic height and width), then run it under ONNX Runtime at each
--check-size and compare with PyTorch (exit status 1 if any max abs difference > --tolerance).

  python tools/export_onnx.py m1_1 repvit_m1_1.onnx
  python tools/export_onnx.py configs/fpn_repvit_m1_1_ade20k.py fpn_m1_1.onnx \\
      --check-size 512 512 --check-size 320 448

Weights: random unless --checkpoint (a fused or trained checkpoint of the config/backbone).
Inputs are normalised images (the data preprocessor's mean / std / BGR->RGB not included).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('target', help='RepViT arch (m1_1) or a segmentation config')
    parser.add_argument('out', help='the .onnx file to write')
    parser.add_argument('--checkpoint', help='weights to load before fusing (state_dict or '
                        'mmengine checkpoint, trained or fused)')
    parser.add_argument('--size', nargs=2, type=int, default=[224, 224], metavar=('H', 'W'),
                        help='the example input size traced for export')
    parser.add_argument('--check-size', nargs=2, type=int, action='append', metavar=('H', 'W'),
                        help='sizes to compare at (repeatable; default 224 224 and 320 448)')
    parser.add_argument('--tolerance', type=float, default=1e-4)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--json', action='store_true', help='print the report as JSON')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmrepvit.analysis.onnx_export import export_and_check
    sizes = [tuple(s) for s in args.check_size] if args.check_size else \
        [(224, 224), (320, 448)]
    report = export_and_check(args.target, args.out, tuple(args.size), sizes,
                              args.cfg_options, args.threads, args.checkpoint)
    worst = max(c['max_abs_diff'] for c in report['checks'])
    report['tolerance'], report['passed'] = args.tolerance, worst <= args.tolerance
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f'wrote {args.out} (opset {report["opset"]}, dynamic H/W, '
              f'outputs {", ".join(report["outputs"])})')
        for c in report['checks']:
            print(f'  {c["size"][0]}x{c["size"][1]}: ONNX Runtime vs PyTorch max abs diff '
                  f'{c["max_abs_diff"]:.2e} (outputs up to {c["max_abs_output"]:.2f}), '
                  f'shapes {c["output_shapes"]}')
        print(('PASS' if report['passed'] else 'FAIL') + f' (tolerance {args.tolerance:g})')
    if not report['passed']:
        sys.exit(1)
    return report


if __name__ == '__main__':
    main()
