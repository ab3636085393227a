"""Interleaved wall-clock timing: on a shared CPU, load drifts over seconds, so candidates are
timed in alternating rounds (A B, B A, ...) and compared per round, never one after the other."""
import contextlib
import statistics
import sys
import time

import torch
from mmengine.utils import ProgressBar


@contextlib.contextmanager
def num_threads(threads):
    """Run the block with ``torch.set_num_threads(threads)`` (``None``: leave as is)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_interleaved(candidates, repeats=30, warmup=5, progress=False, desc='timing'):
    """``{name: [seconds per call, ...]}``: each zero-argument callable of ``candidates``
    called ``warmup`` times untimed, then once per round for ``repeats`` rounds, the order
    rotating so that none always runs first (cold caches) or after the same neighbour."""
    names = list(candidates)
    if not names:
        raise ValueError('nothing to time')
    if repeats < 1 or warmup < 0:
        raise ValueError(f'repeats={repeats!r} must be >= 1 and warmup={warmup!r} >= 0')
    if progress:
        print(f'{desc}: {len(names)} candidates x ({warmup} warm-up + {repeats} timed)',
              file=sys.stderr)
    bar = ProgressBar(len(names) * (warmup + repeats), file=sys.stderr) if progress else None
    times = {name: [] for name in names}
    warm = [(name, False) for name in names for _ in range(warmup)]
    rounds = [(name, True) for r in range(repeats)
              for name in names[r % len(names):] + names[:r % len(names)]]
    for name, timed in warm + rounds:
        start = time.perf_counter()
        candidates[name]()
        if timed:
            times[name].append(time.perf_counter() - start)
        if bar:
            bar.update()
    if progress:
        print(file=sys.stderr)
    return times


def summarize(seconds, batch_size=1):
    """Median / best / spread (interquartile range, min-max) in ms and throughput per second."""
    ms = sorted(s * 1e3 for s in seconds)
    q1, _, q3 = statistics.quantiles(ms, n=4) if len(ms) > 1 else ms * 3
    median = statistics.median(ms)
    return dict(runs=len(ms), median_ms=median, best_ms=ms[0], worst_ms=ms[-1], iqr_ms=q3 - q1,
                mean_ms=statistics.fmean(ms), throughput=batch_size * 1e3 / median,
                best_throughput=batch_size * 1e3 / ms[0])


def paired_ratios(base, other):
    """Per-round speed-up of ``other`` over ``base`` (same round, so same machine load):
    median of the round ratios, and the ratio of the bests."""
    rounds = [b / o for b, o in zip(base, other)]
    return dict(median_round_ratio=statistics.median(rounds),
                best_ratio=min(base) / min(other))
