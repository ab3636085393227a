#!/usr/bin/env python
"""Convert a RepViT checkpoint (original release, legacy, timm, or a detector / segmentor
checkpoint of this project) into a backbone checkpoint in this project's layout, optionally
fused for ``deploy=True``. Files are read with ``torch.load(weights_only=True)``."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('src', help='checkpoint to convert (path or http(s) URL)')
    parser.add_argument('dst', help='where to write the backbone checkpoint')
    parser.add_argument('--arch', help='RepViT variant the weights must fit, e.g. m1_1 '
                        '(default: found from the weights)')
    parser.add_argument('--fuse', action='store_true',
                        help='write the fused weights, for RepViT(deploy=True)')
    parser.add_argument('--prefix', help='take only the keys under this prefix (default: '
                        '"backbone." when the checkpoint has such keys)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmrepvit.checkpoint import CheckpointError, convert_checkpoint
    try:
        meta = convert_checkpoint(args.src, args.dst, arch=args.arch, fuse=args.fuse,
                                  prefix=args.prefix)
    except (CheckpointError, FileNotFoundError, KeyError) as e:
        print(f'error: {e.args[0] if isinstance(e, KeyError) else e}', file=sys.stderr)
        return 1
    print(f'{args.dst}: RepViT {meta["arch"]} backbone, {"fused" if meta["deploy"] else "unfused"}'
          f', from the {meta["source_layout"]} layout')
    return 0


if __name__ == '__main__':
    sys.exit(main())
