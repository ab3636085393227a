#!/usr/bin/env python
"""Write a deploy checkpoint of a whole detector / segmentor: RepViT re-parameterised and
every BatchNorm folded away. tools/test.py recognises it and builds the fused model."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('config', help='the config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='trained checkpoint')
    parser.add_argument('out', help='where to write the fused checkpoint')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmrepvit.apis import fuse_checkpoint_file
    fuse_checkpoint_file(args.config, args.checkpoint, args.out, args.cfg_options)
    print(f'fused checkpoint written to {args.out}')


if __name__ == '__main__':
    main()
