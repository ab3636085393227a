"""Command-line arguments several tools share."""


def add_runtime_arguments(parser) -> None:
    """``--runtime`` and ``--precision`` of an exported model (``deployment.open_model``), as
    tools/test.py and tools/infer.py take them."""
    from mmrepvit.deployment import PRECISIONS, RUNTIMES
    parser.add_argument('--runtime', choices=list(RUNTIMES),
                        help='with an exported .onnx: the runtime that runs it (default '
                        'onnxruntime; openvino: make install-openvino); executorch: an '
                        'ExecuTorch app program (.pte, tools/export_executorch.py)')
    parser.add_argument('--precision', choices=list(PRECISIONS),
                        help='with an exported .onnx: f32 (a float32 file\'s default), bf16 '
                        '(openvino, on a CPU with AVX512-BF16 or AMX), int8 (an int8 file, '
                        'its default); anything the file or CPU cannot give is an error')
