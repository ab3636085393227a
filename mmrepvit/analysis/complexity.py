"""Parameters and multiply-adds (mmengine's ``FlopAnalyzer``; element-wise ops listed as
``uncounted``) of a backbone or a whole model, with a per-part breakdown; a whole model is
counted as mmdet's ``get_flops`` counts it: its ``_forward``, no post-processing."""
import copy

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer

from ..model_variants import DEFAULT_SIZES, build_target, synthetic_batch, target_kind

# The RepViT paper's ImageNet figures: fused, 1000-class head, 224x224 (params, multiply-adds).
PUBLISHED = {'m0_9': (5.1e6, 0.8e9), 'm1_0': (6.8e6, 1.1e9), 'm1_1': (8.2e6, 1.3e9),
             'm1_5': (14.0e6, 2.3e9), 'm2_3': (22.9e6, 4.5e9)}


class _Forward(nn.Module):
    """Traceable ``model._forward(inputs, data_samples)`` with the samples bound."""

    def __init__(self, model, data_samples):
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs):
        return self.model._forward(inputs, self.data_samples)


def _params(module):
    return sum(p.numel() for p in module.parameters())


def count(model, inputs, parts=None, prefix=''):
    """``{'params', 'macs', 'parts': {name: {'params', 'macs'}}, 'uncounted'}`` of ``model``
    run on ``inputs``; ``parts`` are child-module names (default: every child), and an
    ``other`` part holds what no listed part does, so the parts always sum to the total."""
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    by_module, inner = analyzer.by_module(), model.get_submodule(prefix.rstrip('.'))
    names = list(parts) if parts is not None else [n for n, _ in inner.named_children()]
    total = dict(params=_params(inner), macs=analyzer.total())
    out = {name: dict(params=_params(inner.get_submodule(name)),
                      macs=by_module.get(prefix + name, 0)) for name in names}
    other = {k: total[k] - sum(p[k] for p in out.values()) for k in total}
    if any(other.values()):
        out['other'] = other
    return dict(**total, parts=out, uncounted=dict(analyzer.unsupported_ops()))


def model_complexity(spec, size=(224, 224), variants=('unfused', 'fused'), classifier=False,
                     cfg_options=None):
    """``{variant: count(...)}`` for a backbone name or a config at input ``size`` (None: the
    kind's ``DEFAULT_SIZES``)."""
    kind = target_kind(spec)
    size = size or DEFAULT_SIZES[kind]
    report = dict(target=spec, kind=kind, size=list(size), classifier=classifier)
    for variant in variants:
        model = build_target(spec, variant, classifier=classifier, cfg_options=cfg_options)
        batch = synthetic_batch(kind, size)
        with torch.no_grad():
            if kind == 'backbone':
                report[variant] = count(model, (batch, ))
            else:
                data = model.data_preprocessor(copy.copy(batch), False)
                parts = [n for n, _ in model.named_children() if n != 'data_preprocessor']
                report[variant] = count(_Forward(model, data['data_samples']),
                                        (data['inputs'], ), parts, prefix='model.')
                report['input_shape'] = list(data['inputs'].shape)
    return report


def format_complexity(report):
    """A Markdown table: one row per part and variant, in millions / giga."""
    variants = [v for v in ('unfused', 'fused', 'fast') if v in report]
    lines = ['| part | ' + ' | '.join(f'{v} params (M) | {v} MACs (G)' for v in variants)
             + ' |', '|---|' + '---|---|' * len(variants)]
    names = list(report[variants[0]]['parts']) + ['total']
    for name in names:
        cells = []
        for v in variants:
            c = report[v] if name == 'total' else report[v]['parts'].get(name)
            cells += ['', ''] if c is None else [f'{c["params"] / 1e6:.3f}',
                                                 f'{c["macs"] / 1e9:.3f}']
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    size = report.get('input_shape', report['size'])
    uncounted = sorted(report[variants[0]]['uncounted'])
    lines.append(f'\n{report["target"]} at input {size}; multiply-adds (1 MAC = 1 FLOP in '
                 f'mmengine\'s convention). Not counted (element-wise): '
                 f'{", ".join(uncounted) or "none"}.')
    return '\n'.join(lines)


def compare_published():
    """Fused ImageNet models at 224x224 against the published figures: per arch the counted
    and published params / MACs and the relative difference of each."""
    rows = []
    for arch, (params, macs) in PUBLISHED.items():
        fused = model_complexity(arch, (224, 224), ('fused', ), classifier=True)['fused']
        rows.append(dict(arch=arch, params=fused['params'], published_params=params,
                         params_rel_diff=fused['params'] / params - 1, macs=fused['macs'],
                         published_macs=macs, macs_rel_diff=fused['macs'] / macs - 1))
    return rows


def format_published(rows):
    lines = ['| arch | params (M) | published | diff | MACs (G) | published | diff |',
             '|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f'| {r["arch"]} | {r["params"] / 1e6:.2f} | {r["published_params"] / 1e6:.1f} '
                     f'| {100 * r["params_rel_diff"]:+.1f}% | {r["macs"] / 1e9:.3f} '
                     f'| {r["published_macs"] / 1e9:.1f} | {100 * r["macs_rel_diff"]:+.1f}% |')
    return '\n'.join(lines)
