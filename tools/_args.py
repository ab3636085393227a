"""Command-line arguments several tools share."""


def add_runtime_arguments(parser) -> None:
    """``--runtime`` and ``--precision`` of an exported model (``deployment.open_model``)."""
    from mmrepvit.deployment import PRECISIONS, RUNTIMES
    parser.add_argument('--runtime', choices=RUNTIMES, help='the runtime of an exported model '
                        '(default onnxruntime; openvino: make install-openvino; executorch: '
                        'an app program, .pte, tools/export_executorch.py)')
    parser.add_argument('--precision', choices=PRECISIONS, help='f32, bf16 (openvino, on a CPU '
                        'with AVX512-BF16 or AMX) or int8 (an int8 file); default: the file\'s; '
                        'anything the file or CPU cannot give is an error')
