#!/usr/bin/env python
"""Export a segmentor or a detector (RetinaNet-like, Mask R-CNN) as an ExecuTorch app program
(.pte, XNNPACK: a uint8 RGB image [H, W, 3] in, the config's test-time resize and
normalisation inside), or a fused backbone / its ImageNet classifier, then run the program
through ExecuTorch's runtime against PyTorch; exit status 1 if a float32 program's classes,
detections, masks (or features) differ (docs/deployment.md, "On the device").

  python tools/export_executorch.py configs/fpn_repvit_m1_1_ade20k.py fpn_m1_1.pte \\
      --checkpoint fpn_m1_1.pth --int8 fpn_m1_1_int8.pte --calib-images 32
  python tools/export_executorch.py m1_1 repvit_m1_1.pte [--classifier]

Out: a segmentor's int32 class map [H, W]; a detector's boxes (image pixels), scores, labels
and their count (Mask R-CNN: masks [N, H, W] too). A detector program takes images of the
aspect ratio of --size H W. An int8 program's accuracy:
  python tools/test.py CONFIG PATH --runtime executorch.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    from tools._args import export_parser
    parser = export_parser(__doc__, 'the .pte file to write (float32)')
    parser.add_argument('--min-size', type=int, help='smallest image side the program '
                        'takes (default 64; detectors: half the --size)')
    parser.add_argument('--max-size', type=int, help='largest image side the program takes '
                        '(ExecuTorch plans memory for it; default 1024; detectors: the --size)')
    parser.add_argument('--size', nargs=2, type=int, metavar=('H', 'W'),
                        help='the example size traced (default 256 320; backbones 224 224)')
    parser.add_argument('--fixed', action='store_true', help='segmentors and detectors: a '
                        'program of the --size only (smaller and faster on a phone)')
    parser.add_argument('--classifier', action='store_true', help='backbones: the ImageNet '
                        'classifier (logits) instead of the feature maps')
    parser.add_argument('--check-size', nargs=2, type=int, action='append', metavar=('H', 'W'),
                        help='image sizes to compare PyTorch and the program at (repeatable; '
                        'default: the traced size and another)')
    parser.add_argument('--time', type=int, default=0, metavar='N', help='also time the '
                        'program against PyTorch at each check size, N interleaved rounds')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch

    from mmrepvit.deployment import executorch_detector as etd
    from mmrepvit.deployment import executorch_program as etp
    from mmrepvit.model_variants import target_kind
    kind = target_kind(args.target)
    check_options(args, kind)
    torch.set_num_threads(args.threads)  # and ExecuTorch's, when it loads the program
    sides = {name: value for name, value in (('min_size', args.min_size),
                                             ('max_size', args.max_size)) if value is not None}
    checks = dict(time_repeats=args.time,
                  check_sizes=[tuple(s) for s in args.check_size] if args.check_size else None)
    say = (lambda *a: None) if args.json else print
    if kind == 'backbone':
        say(f'exporting {args.target} (torch.export, lowering to XNNPACK: a minute or more)')
        reports = [etp.export_backbone_program(
            args.target, args.out, args.classifier, args.checkpoint,
            export_size=tuple(args.size or (224, 224)), **sides, **checks)]
    else:
        size = tuple(args.size or ((800, 1216) if kind == 'mmdet' else (256, 320)))
        export, options = ((etd.export_detector_program, {}) if kind == 'mmdet' else
                           (etp.export_segmentor_program, checks))
        reports = []
        for path, precision in [(args.out, 'f32')] + ([(args.int8, 'int8')] if args.int8
                                                       else []):
            say(f'exporting {args.target} as a {precision} app program (torch.export'
                f'{", calibrating on val images" if precision == "int8" else ""}, lowering '
                f'to XNNPACK: minutes)')
            reports.append(export(args.target, path, args.checkpoint, precision,
                                  args.calib_images, export_size=size,
                                  cfg_options=args.cfg_options, fixed=args.fixed, **sides,
                                  **options))
    for report in reports:
        say_report(say, report)
    passed = all(passes(c, r['contract']['precision']) for r in reports for c in r['checks'])
    if args.json:
        print(json.dumps(reports, indent=1))
    else:
        print('PASS' if passed else 'FAIL')
    if not passed:
        sys.exit(1)
    return reports


def check_options(args, kind):
    """Exit naming an option the model of ``kind`` does not take (it would be ignored)."""
    if kind == 'backbone' and args.fixed:
        sys.exit('--fixed takes a segmentation or detection config: backbone programs take '
                 '--min-size to --max-size')
    if args.fixed and (args.min_size is not None or args.max_size is not None):
        sys.exit('--fixed takes no --min-size / --max-size: the program takes the --size '
                 'alone')
    if kind == 'backbone' and args.int8:
        sys.exit('--int8 takes a segmentation or detection config: the calibration images '
                 'come from its val set')
    if kind != 'backbone' and args.classifier:
        sys.exit('--classifier takes a backbone (an arch such as m1_1), not a config')
    if kind == 'mmdet' and (args.check_size or args.time):
        sys.exit('--check-size and --time do not take a detection config: a detector program '
                 'is checked against mmdet at --size and at another size of its aspect ratio')


# what a float32 program must meet against PyTorch (int8 changes the outputs: reported only)
FEATURE_TOL = 1e-4
PIXELS_AGREE = 0.999


def passes(check, precision):
    if precision != 'f32':
        return True
    if 'leading' in check:  # detections: every one of mmdet's has its counterpart
        from mmrepvit.deployment.compare import MASK_IOU
        masks = check['min_mask_iou'] is None or check['min_mask_iou'] >= MASK_IOU
        return check['agree'] == check['pytorch'] == check['onnx'] and check['converged'] \
            and masks
    if 'max_abs_diff' in check:
        return check['max_abs_diff'] <= FEATURE_TOL
    return check['agree'] >= PIXELS_AGREE


def say_report(say, report):
    c = report['contract']
    say(f'wrote {report["path"]} ({c["kind"]}, {c["precision"]}; input {c["input_dtype"]} '
        f'{c["input_layout"]} {c["input_channels"]}, {"x".join(map(str, c["min_size"]))} to '
        f'{"x".join(map(str, c["max_size"]))}'
        + (f' resized to {"x".join(map(str, c["resized_size"]))}' if 'resized_size' in c
           else '') + f'; outputs {", ".join(c["output_names"])}'
        + (f'; {report["planned_mb"]:.0f} MiB of activation memory planned)'
           if 'planned_mb' in report else ')'))
    for check in report['checks']:
        size = f'{check["size"][0]}x{check["size"][1]}'
        if 'leading' in check:
            say(f'  {size}: ExecuTorch vs mmdet: {check["agree"]} of {check["pytorch"]} '
                f'detections agree (program: {check["onnx"]}; boxes within '
                f'{check["max_box_diff"]:.2e} px, scores within {check["max_score_diff"]:.2e}'
                + ('' if check['min_mask_iou'] is None else
                   f', mask IoU >= {check["min_mask_iou"]:.3f}') + '); '
                f'NMS {"converged" if check["converged"] else "did NOT converge"}')
        elif 'agree' in check:
            say(f'  {size}: ExecuTorch vs PyTorch (float32): the same class on '
                f'{100 * check["agree"]:.3f}% of pixels')
        else:
            say(f'  {size}: ExecuTorch vs PyTorch: max abs diff {check["max_abs_diff"]:.2e}')
        if 'timing' in check:
            t = check['timing']
            say(f'    {t["threads"]} threads: PyTorch median {t["pytorch"]["median_ms"]:.1f} ms '
                f'(best {t["pytorch"]["best_ms"]:.1f}), ExecuTorch median '
                f'{t["executorch"]["median_ms"]:.1f} ms (best {t["executorch"]["best_ms"]:.1f}); '
                f'speed-up {t["speedup"]["median_round_ratio"]:.2f}x (median of rounds), '
                f'{t["speedup"]["best_ratio"]:.2f}x (bests)')


if __name__ == '__main__':
    main()
