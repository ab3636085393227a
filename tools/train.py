#!/usr/bin/env python
"""Train a detector or segmentor from an mmdet / mmseg config (the toolbox is the config's
default_scope). Flags as mmdet's tools/train.py."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    from tools import _args
    parser = argparse.ArgumentParser(description='Train a RepViT/MoCoViT detector or segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (CUDA)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by total batch / auto_scale_lr.base_batch_size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or without a path from the latest '
                        'checkpoint in the work dir')
    _args.add_cfg_options(parser, 'override config settings, key=value (e.g. '
                          'model.backbone.init_cfg.checkpoint=ckpt.pth)')
    _args.add_launcher_arguments(parser)
    args = _args.parse_launched(parser, argv)
    from mmrepvit.apis import prepare_train_cfg, train
    cfg = prepare_train_cfg(args.config, work_dir=args.work_dir, resume=args.resume,
                            amp=args.amp, auto_scale_lr=args.auto_scale_lr,
                            cfg_options=args.cfg_options, launcher=args.launcher)
    train(cfg)


if __name__ == '__main__':
    main()
