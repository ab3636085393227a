"""Command-line arguments several tools share."""
import argparse
import os


def tool_parser(description: str) -> argparse.ArgumentParser:
    """A parser whose ``--help`` keeps the description's examples as written."""
    return argparse.ArgumentParser(description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_cfg_options(parser, help: str = 'override config settings, key=value') -> None:
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help=help)


def add_launcher_arguments(parser) -> None:
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_launched(parser, argv):
    """``parser``'s arguments, ``LOCAL_RANK`` set from ``--local-rank`` unless already set."""
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def image_size(parser, size):
    """``--size H [W]`` as ``(H, W)`` (W = H when not given), or a usage error."""
    if len(size) not in (1, 2):
        parser.error(f'--size takes H or H W, got {size}')
    return (size[0], size[-1])


def add_runtime_arguments(parser) -> None:
    """``--runtime`` and ``--precision`` of an exported model (``deployment.open_model``)."""
    from mmrepvit.deployment import PRECISIONS, RUNTIMES
    from mmrepvit.deployment.runtime import DEFAULT_RUNTIME
    runs = '; '.join(f'{r.name}: {", ".join(r.suffixes)} ({r.export_tool}; {r.install})'
                     for r in RUNTIMES.values())
    parser.add_argument('--runtime', choices=RUNTIMES, help='the runtime of an exported model, '
                        f'default {DEFAULT_RUNTIME} ({runs})')
    parser.add_argument('--precision', choices=PRECISIONS, help='f32, bf16 (openvino, on a CPU '
                        'with AVX512-BF16 or AMX) or int8 (an int8 file); default: the file\'s; '
                        'anything the file or CPU cannot give is an error')


def add_json_argument(parser) -> None:
    parser.add_argument('--json', metavar='PATH', help='also write the report as JSON '
                        '("-": to stdout, instead of the text)')


def print_report(report: dict, json_path, text) -> dict:
    """``text()`` (the report for people) printed, and ``report`` written to ``json_path``;
    with ``json_path`` '-' only the JSON, to stdout, so that it can be piped."""
    import json
    if json_path == '-':
        print(json.dumps(report, indent=1))
        return report
    print(text())
    if json_path:
        with open(json_path, 'w') as f:
            json.dump(report, f, indent=1)
    return report


def export_parser(description: str, out_help: str):
    """The arguments tools/export_onnx.py and tools/export_executorch.py share; each adds its
    own (sizes, checks) to the parser returned."""
    parser = tool_parser(description)
    parser.add_argument('target', help='a detection / segmentation config, or a backbone arch '
                        '(m1_1)')
    parser.add_argument('out', help=out_help)
    parser.add_argument('--checkpoint', help='weights to load before fusing (plain or fused; '
                        'state_dict or mmengine checkpoint; random without)')
    parser.add_argument('--int8', metavar='PATH', help='detectors / segmentors: also write an '
                        'int8 copy here, calibrated on val images (docs/deployment.md)')
    parser.add_argument('--calib-images', type=int, default=32, help='--int8: how many images '
                        'of the val set calibrate the activation ranges')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--json', action='store_true', help='print the report as JSON')
    add_cfg_options(parser)
    return parser
