#!/usr/bin/env python
"""The main job on built-in demo data (what `make demo` runs): Mask R-CNN and Semantic FPN with
RepViT-M1.1 trained from scratch on CPU, evaluated, fused, evaluated again, drawn, and exported
as int8 ExecuTorch programs, evaluated and timed against the fused models."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--work-dir', default='work_dirs/demo', help='logs, checkpoints, '
                        'pictures and summary.txt go here')
    parser.add_argument('--data-root', default='data/demo', help='made here if missing')
    parser.add_argument('--jobs', nargs='+', default=['maskrcnn', 'fpn'],
                        choices=['maskrcnn', 'fpn'])
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads (default: $OMP_NUM_THREADS if set, else the CPU '
                        'count); data loader workers are set in the configs')
    args = parser.parse_args(argv)
    # OpenMP threads that wait by sleeping, not spinning (unless set): on a CPU shared with
    # other work a spinning thread holds a core its peer needs (docs/demo.md); read when
    # torch's OpenMP starts, so before torch is imported
    os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    import torch

    from mmrepvit.demo.run import failures, run_demo, torch_threads
    try:
        threads = torch_threads(args.threads, os.environ.get('OMP_NUM_THREADS'),
                                os.cpu_count() or 1)
    except ValueError as error:
        raise SystemExit(str(error)) from error
    torch.set_num_threads(threads)
    print(f'mmrepvit demo: {threads} torch thread(s) on {os.cpu_count()} CPU(s)', flush=True)
    rows = run_demo(args.work_dir, args.data_root, tuple(args.jobs))
    failed = failures(rows)
    if failed:  # exit 1: a missed target or a failed stage is never a quiet success
        raise SystemExit('demo failed:\n  ' + '\n  '.join(failed))
    return rows


if __name__ == '__main__':
    main()
