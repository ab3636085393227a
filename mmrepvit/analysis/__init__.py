"""Speed, size and export: what tools/benchmark.py, get_flops.py and which_path.py run."""
from ..deployment.export import export_and_check
from ..model_variants import build_target, synthetic_batch
from ..models import RepViTClassifier
from ..utils.timing import time_interleaved
from .benchmark import benchmark, format_table
from .complexity import PUBLISHED, compare_published, count, model_complexity
from .memory import peak_allocated_bytes, weight_bytes

__all__ = ['benchmark', 'format_table', 'PUBLISHED', 'compare_published', 'count',
           'model_complexity', 'peak_allocated_bytes', 'weight_bytes', 'export_and_check',
           'build_target', 'synthetic_batch', 'RepViTClassifier', 'time_interleaved']
