"""Peak memory of one inference on CPU (CPU tensors have no allocator statistics): the
profiler's allocation and free events summed in time order, on top of what exists."""
import contextlib
import os
import sys

from torch.profiler import ProfilerActivity, profile


@contextlib.contextmanager
def _quiet_stderr():
    """The profiler's C++ side logs its start and stop on file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, 'w') as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def weight_bytes(model):
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def peak_allocated_bytes(fn):
    """Highest bytes held at once by allocations made during ``fn()`` (None if the profiler
    does not report memory events on this PyTorch)."""
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU],
                                  profile_memory=True) as prof:
        fn()
    try:
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == '[memory]']
        events.sort(key=lambda e: e.start_ns())
    except AttributeError:
        return None
    held = peak = 0
    for e in events:
        held += e.nbytes()
        peak = max(peak, held)
    return peak
