#!/usr/bin/env python
"""Which way to run a model on this CPU: every path (PyTorch fused / fast, ONNX Runtime f32 /
int8, OpenVINO f32 / bf16 / int8, ExecuTorch f32 / int8 programs) timed interleaved, and
with --checkpoint each one's accuracy on the config's test set (the loop of tools/test.py)
against float32; prints the table and the fastest path losing at most --tolerance points.
Paths that cannot run here are listed with the reason (docs/deployment.md).

  python tools/which_path.py configs/demo/fpn_repvit_m1_1_demo.py \\
      --checkpoint work_dirs/demo/fpn/fused.pth --tolerance 1.0
  python tools/which_path.py configs/repvit/maskrcnn_repvit_m1_1_coco.py --size 800 1333 --repeats 5
  python tools/which_path.py m1_1 --size 224 224            # a backbone: speed only

Without --checkpoint, weights are random and only float32 paths can be the answer (int8 /
bf16 accuracy needs the test set); with it, the exported files stay in --work-dir.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    from mmrepvit.analysis.which_path import PATHS
    from tools import _args
    parser = _args.tool_parser(__doc__)
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
    _args.add_json_argument(parser)
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    _args.add_cfg_options(parser)
    args = parser.parse_args(argv)
    import os.path as osp

    from mmrepvit.analysis.which_path import format_report, which_path
    from mmrepvit.apis import evaluate_path
    from tools._args import print_report
    work_dir = args.work_dir or osp.join('work_dirs', 'which_path',
                                         osp.splitext(osp.basename(args.target))[0])

    def evaluate(path, weights, runtime, precision, fast):
        return evaluate_path(args.target, weights, runtime, precision, fast,
                             work_dir=osp.join(work_dir, f'test_{path}'),
                             cfg_options=args.cfg_options)

    report = which_path(args.target, args.checkpoint, args.size, args.threads, args.repeats,
                        args.warmup, args.tolerance, args.paths, evaluate, work_dir,
                        args.cfg_options, args.calib_images, progress=not args.quiet)
    return print_report(report, args.json, lambda: format_report(report))


if __name__ == '__main__':
    main()
