#!/usr/bin/env python
"""Parameters and multiply-adds of a RepViT backbone or a whole detector / segmentor, unfused
and fused, with a breakdown by part (backbone / neck / heads; stem / blocks for a backbone).

  python tools/get_flops.py m1_1 --classifier            # ImageNet model, 224x224
  python tools/get_flops.py configs/maskrcnn_repvit_m1_1_coco.py --size 800 1333
  python tools/get_flops.py --published                  # fused m0_9..m2_3 vs the paper
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    from tools import _args
    parser = _args.tool_parser(__doc__)
    parser.add_argument('targets', nargs='*', help='RepViT arch, mocovit-<arch>, or a config')
    parser.add_argument('--size', nargs='+', type=int, metavar='H [W]',
                        help='input size (default 224 for a backbone, 800 1333 for mmdet, '
                             '512 512 for mmseg)')
    parser.add_argument('--variants', nargs='+', default=['unfused', 'fused'],
                        choices=['unfused', 'fused'])
    parser.add_argument('--classifier', action='store_true',
                        help='backbones: count the ImageNet model (1000-class head)')
    parser.add_argument('--published', action='store_true',
                        help='compare fused m0_9..m2_3 with head at 224 with the paper')
    _args.add_json_argument(parser)
    _args.add_cfg_options(parser)
    args = parser.parse_args(argv)
    if not args.targets and not args.published:
        parser.error('give a target, or --published')
    size = _args.image_size(parser, args.size) if args.size else None
    from mmrepvit.analysis import complexity as c
    out = dict(reports=[c.model_complexity(t, size, args.variants, args.classifier,
                                           args.cfg_options) for t in args.targets])
    if args.published:
        out['published'] = c.compare_published()
    return _args.print_report(out, args.json, lambda: '\n'.join(
        [c.format_complexity(r) + '\n' for r in out['reports']]
        + ([c.format_published(out['published'])] if args.published else [])))


if __name__ == '__main__':
    main()
