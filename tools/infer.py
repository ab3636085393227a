#!/usr/bin/env python
"""Predict with a detector or segmentor (plain or fused checkpoint, or a model exported from
its config: .onnx, .xml, .pte) on an image, a folder of images or a video: pictures in
OUT_DIR/vis, predictions as JSON in OUT_DIR/preds. Every input is processed or named at the
end with the reason; exit status 1 when any could not be read (docs/reliability.md).

  python tools/infer.py demo.jpg configs/maskrcnn_repvit_m1_1_coco.py --weights epoch_12.pth
  python tools/infer.py images/ --weights fused.pth          # the config inside the checkpoint
  python tools/infer.py clip.mp4 configs/fpn_repvit_m1_1_ade20k.py --weights iter_40000.pth --fuse
  python tools/infer.py images/ configs/fpn_repvit_m1_1_ade20k.py --weights fpn.onnx \
      --runtime openvino --precision f32

The config inside a checkpoint is read as data, never run: a line of code in it is refused,
naming the line. Pass the config file, or --trust-checkpoint-config for a file you trust.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    from tools import _args
    parser = _args.tool_parser(__doc__)
    parser.add_argument('inputs', help='an image, a folder of images, or a video file')
    parser.add_argument('config', nargs='?', help='config file (default: the config saved in '
                        'the checkpoint)')
    parser.add_argument('--weights', required=True, help='checkpoint (plain or fused), or an '
                        'exported .onnx file')
    parser.add_argument('--out-dir', default='outputs', help='where to write vis/ and preds/')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detections below this score are not drawn or saved')
    parser.add_argument('--fuse', action='store_true',
                        help='fuse the whole model after loading (backbone and head norms)')
    parser.add_argument('--trust-checkpoint-config', action='store_true',
                        help='without a config file: I trust this checkpoint, run the config '
                        'it carries as Python (by default it is read as data only, and a '
                        'config that is not plain data is refused)')
    _args.add_runtime_arguments(parser)
    args = parser.parse_args(argv)
    from mmrepvit.apis.infer import infer
    run = infer(args.inputs, args.config, args.weights, args.out_dir, args.device,
                args.score_thr, args.fuse, args.runtime, args.precision,
                args.trust_checkpoint_config)
    print('\n' + run.summary(args.out_dir))
    if run.failed:
        sys.exit(1)
    return run.written


if __name__ == '__main__':
    main()
