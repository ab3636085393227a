"""Demo Mask R-CNN training step (forward + backward) with ``SeparableRoIAlign``'s written-out
backward against autograd through its per-RoI slices (which zero-fills a feature-map-sized
gradient for every RoI), interleaved on the same real batches. A one-off study.

  python tools/analysis_tools/roi_align_backward_study.py --data-root data/demo
"""
import argparse
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmrepvit.analysis.timing import num_threads, paired_ratios, summarize, time_interleaved  # noqa: E402
from mmrepvit.apis.train import build_runner, prepare_train_cfg  # noqa: E402
from mmrepvit.demo.run import DEMO_CONFIGS, _data_options  # noqa: E402
from mmrepvit.models.layers.roi_align import _WindowedMatmul  # noqa: E402


def through_slices(hwc, wy, wx, windows):
    """The same products, left to autograd."""
    out = [torch.mm(wy[k, :, :yn], torch.matmul(wx[k, :, :xn], hwc[b, ya:ya + yn, xa:xa + xn])
                    .reshape(yn, -1)) for k, (b, ya, yn, xa, xn) in enumerate(windows)]
    return torch.stack(out).view(len(out), wy.shape[1], wx.shape[1], hwc.shape[3])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-root', default='data/demo')
    parser.add_argument('--batches', type=int, default=8)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args(argv)
    options = dict(_data_options(args.data_root, 'maskrcnn'),
                   **{'train_dataloader.num_workers': 0,
                      'train_dataloader.persistent_workers': False})
    cfg = prepare_train_cfg(DEMO_CONFIGS['maskrcnn'], work_dir='work_dirs/roi_align_study',
                            cfg_options=options)
    runner = build_runner(cfg)
    runner.call_hook('before_run')  # CPUSpeedHook: SeparableRoIAlign, channels-last
    model = runner.model.train()
    batch_iter = iter(runner.train_dataloader)
    batches = [model.data_preprocessor(next(batch_iter), True) for _ in range(args.batches)]
    written_out = _WindowedMatmul.apply

    def step(apply, batch):
        _WindowedMatmul.apply = apply
        loss, _ = model.parse_losses(model.loss(batch['inputs'], batch['data_samples']))
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        model.zero_grad()
        return grads

    torch.manual_seed(0)
    a = step(written_out, batches[0])
    torch.manual_seed(0)
    b = step(through_slices, batches[0])
    diff = max((x - y).abs().max().item() for x, y in zip(a, b))
    position = {'autograd': 0, 'written out': 0}

    def candidate(name, apply):
        def call():
            torch.manual_seed(position[name])  # both see the same RoI samples per batch
            step(apply, batches[position[name] % args.batches])
            position[name] += 1
        return call

    with num_threads(args.threads):
        times = time_interleaved({'autograd': candidate('autograd', through_slices),
                                  'written out': candidate('written out', written_out)},
                                 repeats=args.repeats * args.batches, warmup=args.batches,
                                 progress=True, desc='forward + backward')
    _WindowedMatmul.apply = written_out
    print(f'largest gradient difference: {diff:.2e}')
    for name, t in times.items():
        s, r = summarize(t), paired_ratios(times['autograd'], t)
        print(f"{name}: median {s['median_ms'] / 1000:.3f} s, best {s['best_ms'] / 1000:.3f} s, "
              f"speed-up {r['best_ratio']:.2f}x best / {r['median_round_ratio']:.2f}x median")


if __name__ == '__main__':
    main()
