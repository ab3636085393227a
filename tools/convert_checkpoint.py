#!/usr/bin/env python
"""Convert a RepViT checkpoint (original release, legacy, timm, or a detector / segmentor
checkpoint of this project) into a backbone checkpoint in this project's layout, optionally
fused for ``deploy=True``; with --whole-model, a whole detector / segmentor checkpoint (e.g. the
original release's mmdet 2 / mmseg 0 ones) into a native mmdet 3 / mmseg 1 one. Files are read
with ``torch.load(weights_only=True)``."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('src', help='checkpoint to convert (path or http(s) URL)')
    parser.add_argument('dst', help='where to write the backbone checkpoint')
    parser.add_argument('--arch', help='RepViT variant the weights must fit, e.g. m1_1 '
                        '(default: found from the weights)')
    parser.add_argument('--fuse', action='store_true',
                        help='write the fused weights, for RepViT(deploy=True)')
    parser.add_argument('--prefix', help='take only the keys under this prefix (default: '
                        '"backbone." when the checkpoint has such keys)')
    parser.add_argument('--whole-model', action='store_true',
                        help='keep the whole detector / segmentor: backbone converted (and fused '
                        'with --fuse), neck and heads as they are, class names and palette as '
                        'meta["dataset_meta"]')
    args = parser.parse_args(argv)
    from mmrepvit.apis import convert_checkpoint, convert_model_checkpoint
    from mmrepvit.errors import CheckpointError
    if args.whole_model and args.prefix:
        print('error: --whole-model takes the backbone under "backbone."; drop --prefix',
              file=sys.stderr)
        return 1
    try:
        if args.whole_model:
            meta = convert_model_checkpoint(args.src, args.dst, arch=args.arch, fuse=args.fuse)
        else:
            meta = convert_checkpoint(args.src, args.dst, arch=args.arch, fuse=args.fuse,
                                      prefix=args.prefix)
    except (CheckpointError, FileNotFoundError, KeyError) as e:
        print(f'error: {e.args[0] if isinstance(e, KeyError) else e}', file=sys.stderr)
        return 1
    what = 'whole model with a ' if args.whole_model else ''
    print(f'{args.dst}: {what}RepViT {meta["arch"]} backbone, '
          f'{"fused" if meta["deploy"] else "unfused"}, from the {meta["source_layout"]} layout')
    return 0


if __name__ == '__main__':
    sys.exit(main())
