#!/usr/bin/env python
"""Latency (median and spread after warm-up), throughput and peak memory of RepViT backbones
and whole detectors / segmentors, unfused, fused and fused + CPU fast path side by side.

Every candidate is timed interleaved with the others (A B C, B C A, ...), so ratios hold on a
busy machine. Examples:

  python tools/benchmark.py m1_1 --size 224 --threads 2 --repeats 30
  python tools/benchmark.py mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py@unfused,fast \\
      configs/maskrcnn_repvit_m1_1_coco.py@fused,fast --size 800 1333 --repeats 5 --warmup 1
  python tools/benchmark.py m1_1 --variants fused onnxruntime onnxruntime-int8 --size 224 --size 512
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    from mmrepvit.analysis.benchmark import DEPLOYED
    from mmrepvit.model_variants import VARIANTS
    from tools import _args
    parser = _args.tool_parser(__doc__)
    parser.add_argument('targets', nargs='+',
                        help='RepViT arch (m1_1), mocovit-1.0x, or a config (file or '
                             'mmdet::/mmseg:: name), optionally @variant[,variant] to time '
                             'it only so; the first candidate is the reference')
    parser.add_argument('--variants', nargs='+', default=['unfused', 'fused', 'fast'],
                        choices=VARIANTS + tuple(DEPLOYED),
                        help='fused-backbone: only the backbone fused; fused: every '
                             'BatchNorm folded too; fast: fused + channels-last; compiled: '
                             'fast + TorchInductor on the backbone; onnxruntime, openvino, '
                             'executorch: fused, exported and run there (whole models with '
                             'their test step), -int8 / -bf16: in that precision, int8 '
                             'calibrated on synthetic images, timing only (docs/speed.md)')
    parser.add_argument('--size', nargs='+', type=int, action='append', metavar='H [W]',
                        help='input size, repeatable (default 224 for a backbone, 800 1333 '
                             'for mmdet, 512 512 for mmseg)')
    parser.add_argument('--batch-size', nargs='+', type=int, default=[1])
    parser.add_argument('--threads', nargs='+', type=int, default=[2])
    parser.add_argument('--repeats', type=int, default=30, help='timed runs per candidate')
    parser.add_argument('--warmup', type=int, default=5, help='untimed runs per candidate')
    parser.add_argument('--mode', choices=['predict', 'tensor'], default='predict',
                        help='whole models: the full test step, or the network only')
    parser.add_argument('--classifier', action='store_true',
                        help='backbones: time the ImageNet model (1000-class head)')
    parser.add_argument('--no-memory', action='store_true', help='skip peak memory')
    _args.add_json_argument(parser)
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    _args.add_cfg_options(parser)
    parser.add_argument('--seg-postprocess', type=int, metavar='CLASSES',
                        help='instead: time a segmentor\'s post-processing apart from its '
                             'network (mmseg\'s resize + argmax against resize_argmax) for '
                             'CLASSES classes at --size, --threads')
    args = parser.parse_args(argv)
    args.size = [_args.image_size(parser, s) for s in args.size or []]
    from mmrepvit.analysis.benchmark import (
        benchmark,
        format_seg_postprocess,
        format_table,
        time_seg_postprocess,
    )
    from mmrepvit.model_variants import DEFAULT_SIZES, target_kind
    from tools._args import print_report
    if args.seg_postprocess:
        report = time_seg_postprocess(args.seg_postprocess, (args.size or [(512, 512)])[0],
                                      threads=args.threads[0], repeats=args.repeats,
                                      warmup=args.warmup)
        return print_report(report, args.json, lambda: format_seg_postprocess(report))
    sizes = args.size or [DEFAULT_SIZES[target_kind(args.targets[0].partition('@')[0])]]
    report = benchmark(args.targets, args.variants, sizes, args.batch_size, args.threads,
                       args.repeats, args.warmup, args.mode, args.classifier, args.cfg_options,
                       memory=not args.no_memory, progress=not args.quiet)
    report['command'] = 'python tools/benchmark.py ' + ' '.join(
        argv if argv is not None else sys.argv[1:])
    return print_report(report, args.json, lambda: format_table(report))


if __name__ == '__main__':
    main()
