#!/usr/bin/env python
"""Write the fused checkpoint of a whole detector / segmentor: its backbone re-parameterised,
the rest as trained; it loads with the training config (tools/test.py, any loader)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('config', help='the config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='trained checkpoint')
    parser.add_argument('out', help='where to write the fused checkpoint')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    from mmrepvit.apis import fuse_checkpoint_file
    fuse_checkpoint_file(args.config, args.checkpoint, args.out, args.cfg_options)
    print(f'fused checkpoint written to {args.out}')


if __name__ == '__main__':
    main()
