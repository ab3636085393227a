"""What the CPU is and which of its instruction sets matter for deployed inference: int8 dot
products (VNNI), bf16 arithmetic (AVX512-BF16, AMX). Read from ``/proc/cpuinfo`` (Linux)."""
import platform
from typing import Dict, FrozenSet

# the flags that decide which runtime / precision is fastest, as /proc/cpuinfo spells them
RELEVANT_FLAGS = ('avx2', 'avx512f', 'avx512_vnni', 'avx_vnni', 'avx512_bf16', 'amx_bf16',
                  'amx_int8', 'amx_tile')
# any one of these lets OpenVINO's CPU plugin compute in bf16
BF16_FLAGS = ('avx512_bf16', 'amx_bf16')
# any one of these gives int8 dot products that accumulate in 32 bits; without them, x86 int8
# kernels multiply u8 x s8 pairs into saturating 16-bit sums (``pmaddubsw``)
INT8_DOT_FLAGS = ('avx512_vnni', 'avx_vnni', 'amx_int8')


def _cpuinfo() -> Dict[str, str]:
    """The first processor's entries of /proc/cpuinfo (empty where there is none)."""
    try:
        with open('/proc/cpuinfo') as f:
            first = f.read().strip().split('\n\n')[0]
    except OSError:
        return {}
    pairs = (line.partition(':') for line in first.splitlines())
    return {key.strip(): value.strip() for key, _, value in pairs}


def cpu_model() -> str:
    """The CPU's model name (``lscpu``'s "Model name")."""
    return _cpuinfo().get('model name') or platform.processor() or platform.machine()


def cpu_flags() -> FrozenSet[str]:
    """Every instruction-set flag the CPU reports."""
    return frozenset(_cpuinfo().get('flags', '').split())


def relevant_flags(flags=None) -> Dict[str, bool]:
    """``{flag: present}`` for ``RELEVANT_FLAGS``."""
    flags = cpu_flags() if flags is None else flags
    return {flag: flag in flags for flag in RELEVANT_FLAGS}


def has_int8_dot(flags=None) -> bool:
    """Whether the CPU has one of ``INT8_DOT_FLAGS``: int8 products summed without
    saturating."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in INT8_DOT_FLAGS)


def describe_cpu(flags=None) -> str:
    """One line: the model name and which relevant flags it has, e.g.
    ``AMD EPYC (avx2; no avx512_vnni, avx512_bf16, amx)``."""
    present = relevant_flags(flags)
    have = [f for f, ok in present.items() if ok]
    amx = any(ok for f, ok in present.items() if f.startswith('amx'))
    lacking = [f for f in ('avx512_vnni', 'avx512_bf16') if not present[f]] + ['amx'] * (not amx)
    parts = [', '.join(have) or 'none of ' + ', '.join(RELEVANT_FLAGS)]
    parts += ['no ' + ', '.join(lacking)] if lacking else []
    return f'{cpu_model()} ({"; ".join(parts)})'
