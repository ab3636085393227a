"""Speed, size and export: what tools/benchmark.py, get_flops.py and export_onnx.py run."""
from ..deployment.compare import check_onnx
from ..deployment.export import export_and_check, export_onnx
from ..model_variants import VARIANTS, build_target, synthetic_batch, target_kind
from ..models import RepViTClassifier
from ..utils.timing import paired_ratios, summarize, time_interleaved
from .benchmark import benchmark, format_table
from .complexity import (
                         PUBLISHED,
                         compare_published,
                         count,
                         format_complexity,
                         format_published,
                         model_complexity,
)
from .memory import peak_allocated_bytes, weight_bytes

__all__ = ['benchmark', 'format_table', 'RepViTClassifier', 'PUBLISHED', 'compare_published',
           'count', 'format_complexity', 'format_published', 'model_complexity',
           'peak_allocated_bytes', 'weight_bytes', 'check_onnx', 'export_and_check',
           'export_onnx', 'VARIANTS', 'build_target', 'synthetic_batch', 'target_kind',
           'paired_ratios', 'summarize', 'time_interleaved']
