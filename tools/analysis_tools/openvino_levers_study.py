"""OpenVINO's CPU settings, and NNCF's int8 against the project's QDQ int8 file, timed
interleaved against ONNX Runtime int8 on a fused backbone: what each lever is worth on this
CPU (docs/deployment.md quotes a run). A one-off study, kept out of the installed package.

  python tools/analysis_tools/openvino_levers_study.py --arch m1_1 --size 224 --size 512 \\
      --threads 2 --repeats 15 --warmup 3
  python tools/analysis_tools/openvino_levers_study.py --nncf CONFIG MODEL.onnx OUT.xml \\
      --calib-images 32          # then: tools/test.py CONFIG OUT.xml --runtime openvino

Levers (each against the project's settings, ``openvino_runtime.LATENCY_PROPERTIES``):
threads pinned to cores, no performance hint / stream count (OpenVINO's defaults), thread
count left to OpenVINO, and the int8 model made by NNCF instead of the QDQ file.
"""
import argparse
import os.path as osp
import sys
import tempfile

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmrepvit.analysis.benchmark import environment, format_environment  # noqa: E402
from mmrepvit.analysis.timing import num_threads, paired_ratios, summarize, time_interleaved  # noqa: E402
from mmrepvit.deployment.export import export_onnx, exportable, make_traceable  # noqa: E402
from mmrepvit.deployment.openvino_runtime import (  # noqa: E402
    LATENCY_PROPERTIES,
    compile_openvino,
    read_openvino,
)
from mmrepvit.deployment.quantize import (  # noqa: E402
    dataset_feeds,
    graph_inputs,
    quantize_nncf,
    quantize_onnx,
    synthetic_feeds,
)
from mmrepvit.deployment.runtime import OnnxSessions  # noqa: E402
from mmrepvit.targets import load_target_config, synthetic_batch  # noqa: E402

# label -> (model file key, OpenVINO properties)
LEVERS = {
    'openvino-int8 (project settings)': ('qdq', LATENCY_PROPERTIES),
    'openvino-int8, threads pinned': ('qdq', dict(LATENCY_PROPERTIES, ENABLE_CPU_PINNING=True)),
    'openvino-int8, no hint / streams': ('qdq', {}),
    'openvino-int8, thread count OpenVINO\'s': ('qdq', dict(LATENCY_PROPERTIES,
                                                            INFERENCE_NUM_THREADS=0)),
    'openvino-int8, NNCF model': ('nncf', LATENCY_PROPERTIES),
    'openvino f32': ('f32', LATENCY_PROPERTIES),
}
REFERENCE = 'onnxruntime-int8'


def files(arch, size, folder):
    """The fused backbone exported (float32), its QDQ int8 copy and NNCF's int8 IR, both
    calibrated on the same four synthetic images."""
    module, names = exportable(arch)
    f32 = export_onnx(make_traceable(module), osp.join(folder, 'f32.onnx'), names, size)
    feeds = synthetic_feeds(None, 'backbone', size, graph_inputs(f32))
    quantize_onnx(f32, osp.join(folder, 'qdq.onnx'), feeds)
    quantize_nncf(f32, osp.join(folder, 'nncf.xml'), feeds)
    return dict(f32=f32, qdq=osp.join(folder, 'qdq.onnx'), nncf=osp.join(folder, 'nncf.xml'))


def candidates(paths, threads):
    calls = {}
    ort = OnnxSessions(paths['qdq'], threads=threads)
    calls[REFERENCE] = lambda x: ort.run(x)
    for label, (key, properties) in LEVERS.items():
        precision = 'f32' if key == 'f32' else 'int8'
        request = compile_openvino(read_openvino(paths[key]), precision, threads, label,
                                   properties).create_infer_request()
        calls[label] = lambda x, r=request: r.infer({0: x.numpy()}, share_inputs=True)
    return calls


def study(arch, sizes, threads, repeats, warmup):
    print(format_environment(environment()))
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix='mmrepvit_levers_') as folder:
            paths = files(arch, size, folder)
            x = synthetic_batch('backbone', size)
            with num_threads(threads):
                calls = {k: (lambda f=f, x=x: f(x))
                         for k, f in candidates(paths, threads).items()}
                times = time_interleaved(calls, repeats, warmup)
        print(f'\n{arch} {size[0]}x{size[1]}, {threads} threads, {repeats} rounds '
              f'interleaved; speed-up over {REFERENCE} (best / median of per-round ratios, '
              f'> 1: faster)')
        print(f'| candidate | median ms | best ms | vs {REFERENCE} |\n|---|---|---|---|')
        for label, seconds in times.items():
            s, r = summarize(seconds), paired_ratios(times[REFERENCE], seconds)
            print(f'| {label} | {s["median_ms"]:.2f} | {s["best_ms"]:.2f} | '
                  f'{r["best_ratio"]:.2f}x / {r["median_round_ratio"]:.2f}x |')


def nncf_model(config, onnx_file, out, calib_images):
    """NNCF's int8 IR of an exported whole model, calibrated as ``--int8`` calibrates."""
    feeds = dataset_feeds(load_target_config(config), graph_inputs(onnx_file), calib_images)
    report = quantize_nncf(onnx_file, out, feeds)
    print(f'wrote {out}: {report["fake_quantize_ops"]} FakeQuantize ops, calibrated on '
          f'{report["calibration_inputs"]} val images; accuracy: python tools/test.py '
          f'{config} {out} --runtime openvino --precision int8')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', default='m1_1')
    parser.add_argument('--size', type=int, action='append', help='square input, repeatable')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=15)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--nncf', nargs=3, metavar=('CONFIG', 'ONNX', 'OUT_XML'),
                        help='instead: write NNCF\'s int8 IR of an exported whole model')
    parser.add_argument('--calib-images', type=int, default=32)
    args = parser.parse_args(argv)
    if args.nncf:
        return nncf_model(*args.nncf, args.calib_images)
    torch.set_num_threads(args.threads)
    study(args.arch, [(s, s) for s in args.size or [224]], args.threads, args.repeats,
          args.warmup)


if __name__ == '__main__':
    main()
