"""Training-step time of config variants, interleaved on the same real batches: what a change of
head width, RoI count or resolution costs per step (the README's demo levers quote it). A
one-off study, kept out of the installed package.

  python tools/analysis_tools/config_step_study.py configs/demo/fpn_repvit_m1_1_demo.py \
      --variant 'neck 256' "{'model.neck.out_channels': 256, \
                             'model.decode_head.in_channels': [256, 256, 256, 256]}" \
      --variant 'as configured' '{}' --data-root data/demo

Each variant is a name and a dict of ``--cfg-options``-style overrides. ``--checkpoint``
starts every variant from the same trained weights (the number of RoIs a detector samples
depends on how far it has learned), loaded non-strictly so that widths may differ.
"""
import argparse
import ast
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmrepvit.analysis.timing import num_threads, paired_ratios, summarize, time_interleaved  # noqa: E402
from mmrepvit.apis.train import build_runner, prepare_train_cfg  # noqa: E402
from mmrepvit.demo.run import _data_options  # noqa: E402


def build_step(config, overrides, work_dir, checkpoint=None):
    """``(train_step(batch), train dataloader)`` of ``config`` with ``overrides``."""
    options = dict(overrides)
    for split in ('train', 'val', 'test'):  # batches are made once, up front
        options[f'{split}_dataloader.num_workers'] = 0
        options[f'{split}_dataloader.persistent_workers'] = False
    cfg = prepare_train_cfg(config, work_dir=work_dir, cfg_options=options)
    runner = build_runner(cfg)
    runner.call_hook('before_run')  # e.g. CPUSpeedHook converts the model here
    wrapper = runner.build_optim_wrapper(runner.optim_wrapper) \
        if isinstance(runner.optim_wrapper, dict) else runner.optim_wrapper
    if checkpoint:
        from mmengine.runner import load_checkpoint
        load_checkpoint(runner.model, checkpoint, strict=False)
    runner.model.train()
    return (lambda batch: runner.model.train_step(batch, wrapper)), runner.train_dataloader


def study(config, variants, data_root=None, checkpoint=None, batches=8, repeats=3, threads=2,
          work_dir='work_dirs/config_step_study'):
    job = 'maskrcnn' if 'maskrcnn' in osp.basename(config) else 'fpn'
    data = _data_options(data_root, job) if data_root else {}
    steps, loader = {}, None
    for i, (name, overrides) in enumerate(variants):
        steps[name], loader_i = build_step(config, dict(data, **overrides),
                                           osp.join(work_dir, str(i)), checkpoint)
        loader = loader or loader_i
    batch_iter = iter(loader)
    fixed = [next(batch_iter) for _ in range(batches)]
    position = {name: 0 for name in steps}

    def candidate(name):
        def call():  # each call: the variant's next batch, so all see the same sequence
            steps[name](fixed[position[name] % batches])
            position[name] += 1
        return call

    with num_threads(threads):
        times = time_interleaved({name: candidate(name) for name in steps},
                                 repeats=repeats * batches, warmup=batches, progress=True,
                                 desc='train step')
    base = next(iter(times))
    lines = [f'{osp.basename(config)}: training step, {batches} batches cycled, {threads} '
             f'threads, {repeats * batches} interleaved rounds',
             f'| variant | median s | best s | speed-up over {base!r} (best / median) |',
             '|---|---|---|---|']
    for name, t in times.items():
        s, r = summarize(t), paired_ratios(times[base], t)
        lines.append(f"| {name} | {s['median_ms'] / 1000:.3f} | {s['best_ms'] / 1000:.3f} | "
                     f"{r['best_ratio']:.2f}x / {r['median_round_ratio']:.2f}x |")
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--variant', nargs=2, action='append', metavar=('NAME', 'OVERRIDES'),
                        required=True, help='a name and a Python dict of config overrides '
                        '(the first variant is the base of the speed-ups)')
    parser.add_argument('--data-root', help='demo data root (data/demo) for the demo configs')
    parser.add_argument('--checkpoint', help='start every variant from these weights')
    parser.add_argument('--batches', type=int, default=8)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args(argv)
    variants = []
    for name, text in args.variant:
        try:
            overrides = ast.literal_eval(text)
        except (ValueError, SyntaxError) as error:
            raise SystemExit(
                f'--variant {name!r}: {text!r} is not a Python dict ({error})') from error
        if not isinstance(overrides, dict):
            raise SystemExit(f'--variant {name!r}: {text!r} is not a dict of overrides')
        variants.append((name, overrides))
    torch.manual_seed(0)
    print(study(args.config, variants, args.data_root, args.checkpoint, args.batches,
                args.repeats, args.threads))


if __name__ == '__main__':
    main()
