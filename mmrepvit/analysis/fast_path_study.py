"""The measurement behind ``optimize_for_cpu``: every candidate CPU fast path of a fused
backbone, timed interleaved against the plain fused model (docs/speed.md quotes a run).

  python -m mmrepvit.analysis.fast_path_study --arch m1_1 --size 224 --repeats 30

Candidates that did not earn their place stay here, so that the claim can be re-checked.
"""
import argparse
import copy

import torch
import torch.nn as nn

from ..deploy import optimize_for_cpu
from ..models.layers import SqueezeExcite
from .targets import build_target, synthetic_batch
from .timing import num_threads, paired_ratios, summarize, time_interleaved


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='m1_1')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=30)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--no-compile', action='store_true')
    args = parser.parse_args(argv)
    print(study(args.arch, args.size, args.batch_size, args.threads, args.repeats,
                args.warmup, not args.no_compile))


if __name__ == '__main__':
    main()
