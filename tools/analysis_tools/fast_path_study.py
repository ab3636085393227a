"""The measurement behind ``optimize_for_cpu``: every candidate CPU fast path of a fused
backbone, timed interleaved against the plain fused model (docs/speed.md quotes a run). A
one-off study, kept out of the installed package.

  python tools/analysis_tools/fast_path_study.py --arch m1_1 --size 224 --repeats 30
  python tools/analysis_tools/fast_path_study.py \
      --train-step configs/demo/maskrcnn_repvit_m1_1_demo.py

Candidates that did not earn their place stay here, so that the claim can be re-checked.
"""
import argparse
import copy
import os.path as osp
import sys

import torch
import torch.nn as nn

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmrepvit.analysis.timing import num_threads, paired_ratios, summarize, time_interleaved  # noqa: E402
from mmrepvit.cpu_fast_path import optimize_for_cpu  # noqa: E402
from mmrepvit.models.layers import SqueezeExcite  # noqa: E402
from mmrepvit.targets import build_target, synthetic_batch  # noqa: E402


class PooledSqueezeExcite(nn.Module):
    """SE on the pooled vector with Linear layers instead of 1x1 convs on a 1x1 map."""

    def __init__(self, se):
        super().__init__()
        self.fc1 = nn.Linear(se.fc1.in_channels, se.fc1.out_channels)
        self.fc2 = nn.Linear(se.fc2.in_channels, se.fc2.out_channels)
        with torch.no_grad():
            for lin, conv in ((self.fc1, se.fc1), (self.fc2, se.fc2)):
                lin.weight.copy_(conv.weight.flatten(1))
                lin.bias.copy_(conv.bias)
        self.act, self.gate = se.act, se.gate

    def forward(self, x):
        s = self.gate(self.fc2(self.act(self.fc1(x.mean((2, 3))))))
        return x * s[:, :, None, None]


def pooled_se(model):
    for name, child in model.named_children():
        if isinstance(child, SqueezeExcite):
            setattr(model, name, PooledSqueezeExcite(child))
        else:
            pooled_se(child)
    return model


def candidates(arch, x, compile=True):
    """{name: (module, grad mode)}; all compute the fused model's function."""
    fused = build_target(arch, 'fused')
    cl = optimize_for_cpu(copy.deepcopy(fused))
    out = {'fused': (fused, torch.inference_mode), 'fused, no_grad': (fused, torch.no_grad),
           'pooled SE': (pooled_se(copy.deepcopy(fused)), torch.inference_mode),
           'channels_last': (cl, torch.inference_mode),
           'channels_last + pooled SE': (pooled_se(copy.deepcopy(cl)), torch.inference_mode)}
    with torch.no_grad():
        out['jit trace + freeze'] = (torch.jit.freeze(torch.jit.trace(
            copy.deepcopy(fused), x)), torch.no_grad)
        out['channels_last + jit trace + freeze'] = (torch.jit.freeze(torch.jit.trace(
            copy.deepcopy(cl), x)), torch.no_grad)
        out['jit optimize_for_inference'] = (torch.jit.optimize_for_inference(
            torch.jit.trace(copy.deepcopy(fused), x)), torch.no_grad)
    if compile:
        out['channels_last + torch.compile'] = (
            optimize_for_cpu(copy.deepcopy(fused), compile=True), torch.inference_mode)
    return out


def study(arch='m1_1', size=224, batch_size=1, threads=2, repeats=30, warmup=5, compile=True):
    x = synthetic_batch('backbone', (size, size), batch_size)
    cands = candidates(arch, x, compile)
    with torch.no_grad():
        ref = cands['fused'][0](x)
        errors = {name: max(float((a - b).abs().max()) for a, b in zip(ref, m(x)))
                  for name, (m, _) in cands.items()}

    def call(module, mode):
        def fn():
            with mode():
                module(x)
        return fn

    with num_threads(threads):
        times = time_interleaved({n: call(*c) for n, c in cands.items()}, repeats, warmup,
                                 progress=True, desc=f'{arch} {size}px')
    rows = []
    for name, t in times.items():
        s, r = summarize(t, batch_size), paired_ratios(times['fused'], t)
        rows.append(f'| {name} | {s["median_ms"]:.2f} | {s["best_ms"]:.2f} '
                    f'| {r["best_ratio"]:.2f}x / {r["median_round_ratio"]:.2f}x '
                    f'| {errors[name]:.1e} |')
    return '\n'.join(['| candidate | median ms | best ms | vs fused (best / median) '
                      '| max abs diff vs fused |', '|---|---|---|---|---|'] + rows)


def train_step_study(config, size=128, batch_size=4, objects=4, threads=2, repeats=20,
                     warmup=3):
    """One Mask R-CNN training step (forward, backward, AdamW) with mmcv's RoIAlign against
    ``SeparableRoIAlign``, without and with channels-last (what ``CPUSpeedHook`` does),
    interleaved, on synthetic images with ``objects`` masked boxes."""
    from mmdet.testing import demo_mm_inputs
    from mmengine.optim import build_optim_wrapper

    from mmrepvit.config import build_model
    from mmrepvit.cpu_fast_path import use_channels_last, use_separable_roi_align
    from mmrepvit.targets import load_target_config
    cfg = load_target_config(config)
    if 'mask_head' not in cfg.model.get('roi_head', {}):
        raise ValueError(f'--train-step times a Mask R-CNN training step; {config!r} has no '
                         f'roi_head.mask_head (e.g. configs/demo/maskrcnn_repvit_m1_1_demo.py)')
    batch = demo_mm_inputs(batch_size, [(3, size, size)] * batch_size,
                           num_items=[objects] * batch_size,
                           num_classes=cfg.model.roi_head.bbox_head.num_classes, with_mask=True)
    torch.manual_seed(0)
    base = build_model(cfg)
    models = {'mmcv RoIAlign': base, 'SeparableRoIAlign': copy.deepcopy(base),
              'SeparableRoIAlign + channels-last': copy.deepcopy(base)}
    use_separable_roi_align(models['SeparableRoIAlign'])
    use_channels_last(use_separable_roi_align(models['SeparableRoIAlign + channels-last']))

    def step(model):
        model.train()
        wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))

        def fn():
            model.train_step(copy.deepcopy(batch), wrapper)
        return fn

    with num_threads(threads):
        times = time_interleaved({n: step(m) for n, m in models.items()}, repeats, warmup,
                                 progress=True, desc='train step')
    rows = []
    for name, t in times.items():
        s, r = summarize(t, batch_size), paired_ratios(times['mmcv RoIAlign'], t)
        rows.append(f'| {name} | {s["median_ms"]:.0f} | {s["best_ms"]:.0f} '
                    f'| {r["best_ratio"]:.2f}x / {r["median_round_ratio"]:.2f}x |')
    return '\n'.join([f'{osp.basename(config)}: train step, batch {batch_size} x {size}px, '
                      f'{threads} threads, {repeats} interleaved rounds',
                      '| training step | median ms | best ms | speed-up (best / median) |',
                      '|---|---|---|---|'] + rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='m1_1')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=30)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--no-compile', action='store_true')
    parser.add_argument('--train-step', metavar='CONFIG',
                        help='instead: a Mask R-CNN config\'s training step, mmcv RoIAlign '
                        'against SeparableRoIAlign without and with channels-last (--size, '
                        '--batch-size, --threads, --repeats)')
    args = parser.parse_args(argv)
    if args.train_step:
        print(train_step_study(args.train_step, size=128 if args.size == 224 else args.size,
                               batch_size=args.batch_size if args.batch_size > 1 else 4,
                               threads=args.threads, repeats=args.repeats,
                               warmup=args.warmup))
        return
    print(study(args.arch, args.size, args.batch_size, args.threads, args.repeats,
                args.warmup, not args.no_compile))


if __name__ == '__main__':
    main()
