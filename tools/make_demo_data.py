#!/usr/bin/env python
"""Write the seeded demo dataset: COCO layout under ROOT/coco, ADE20K layout under ROOT/ade."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    from mmrepvit.demo import make_demo_dataset
    from mmrepvit.demo.data import NUM_TRAIN, NUM_VAL, SEED, SIZE
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('root', nargs='?', default='data/demo')
    parser.add_argument('--num-train', type=int, default=NUM_TRAIN)
    parser.add_argument('--num-val', type=int, default=NUM_VAL)
    parser.add_argument('--size', type=int, default=SIZE[0], help='image side in pixels')
    parser.add_argument('--seed', type=int, default=SEED)
    args = parser.parse_args(argv)
    files = make_demo_dataset(args.root, args.num_train, args.num_val, (args.size, args.size),
                              args.seed)
    print('\n'.join(f'{split}: {path}' for split, path in files.items()))


if __name__ == '__main__':
    main()
