#!/usr/bin/env python
"""Which way to run a model on this CPU: every path (PyTorch fused / fast, ONNX Runtime f32 /
int8, OpenVINO f32 / bf16 / int8, ExecuTorch f32 / int8 programs) timed interleaved, and
with --checkpoint each one's accuracy on the config's test set (the loop of tools/test.py)
against float32; prints the table (CPU, its flags, library versions) and the fastest path
losing at most --tolerance points.

  python tools/which_path.py configs/demo/fpn_repvit_m1_1_demo.py \\
      --checkpoint work_dirs/demo/fpn/fused.pth --tolerance 1.0
  python tools/which_path.py configs/repvit/maskrcnn_repvit_m1_1_coco.py --size 800 1333 --repeats 5
  python tools/which_path.py m1_1 --size 224 224            # a backbone: speed only

Paths that cannot run here (bf16 without AVX512-BF16 / AMX, a runtime not installed,
ExecuTorch for a whole model) are listed with the reason. Without --checkpoint, weights are
random and only float32 paths can be the answer (int8 / bf16 change the outputs; their
accuracy needs the test set). With it, the exported files (float32, and int8 calibrated on
the val set) stay in --work-dir.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    from mmengine.config import DictAction

    from mmrepvit.analysis.which_path import PATHS
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('target', help='a detector / segmentor config, or a backbone arch')
    parser.add_argument('--checkpoint', help='trained weights (plain or fused): measure '
                        'every path\'s accuracy on the config\'s test set')
    parser.add_argument('--size', nargs=2, type=int, metavar=('H', 'W'), help='input size '
                        'timed and exported (default 224 224 backbone, 800 1333 mmdet, 512 '
                        '512 mmseg)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=10, help='timed rounds')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--tolerance', type=float, default=1.0, help='largest drop of a key '
                        'metric (bbox / segm AP50, mIoU) in points against float32')
    parser.add_argument('--paths', nargs='+', choices=list(PATHS), default=list(PATHS))
    parser.add_argument('--calib-images', type=int, default=32, help='int8 calibration '
                        'images from the val set')
    parser.add_argument('--work-dir', help='where the exports and test logs go (default '
                        'work_dirs/which_path/CONFIG_NAME)')
    parser.add_argument('--json', metavar='PATH', help='also write the report as JSON')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import os.path as osp

    from mmengine.fileio import dump

    from mmrepvit.analysis.which_path import format_report, which_path
    from mmrepvit.apis import evaluate_path
    name = osp.splitext(osp.basename(args.target))[0]
    work_dir = args.work_dir or osp.join('work_dirs', 'which_path', name)

    def evaluate(path, weights, runtime, precision, fast):
        return evaluate_path(args.target, weights, runtime, precision, fast,
                             work_dir=osp.join(work_dir, f'test_{path}'),
                             cfg_options=args.cfg_options)

    report = which_path(args.target, args.checkpoint, tuple(args.size) if args.size else None,
                        args.threads, args.repeats, args.warmup, args.tolerance, args.paths,
                        evaluate, work_dir, args.cfg_options, args.calib_images,
                        progress=not args.quiet)
    print(format_report(report))
    if args.json:
        dump(report, args.json, file_format='json', indent=1)
    return report


if __name__ == '__main__':
    main()
