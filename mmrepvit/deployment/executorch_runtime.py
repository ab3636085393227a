"""Running ExecuTorch programs (``.pte``): loading one, its contract (constant methods), the
image steps an app program runs inside, and the sessions ``deployed_model`` feeds. Needs only
a program file and a config, never the exporter."""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..config import default_dataset_meta, toolbox_of
from .runtime import RuntimeSpec, register_runtime

PTE_SUFFIX = '.pte'
PRECISIONS = ('f32', 'int8')
CONTRACT_VERSION = 1
DEFAULT_MIN_SIZE = 64
DEFAULT_MAX_SIZE = 1024


def require_executorch():
    """The ``executorch`` package, or an ImportError naming the install command."""
    try:
        import executorch  # noqa: F401
        from executorch.runtime import Runtime  # noqa: F401
    except ImportError as error:
        raise ImportError('ExecuTorch programs need the executorch package: pip install '
                          '-r requirements/executorch.txt (it needs numpy 2)') from error


def round_div(a, b):
    """``round(a / b)`` of non-negative ints, halves up (also for symbolic sizes)."""
    return (2 * a + b) // (2 * b)


def keep_ratio_size(h, w, long_edge: int, short_edge: int):
    """mmcv's keep-ratio rescale (``mmcv.rescale_size``) of an (h, w) image to at most
    ``long_edge`` x ``short_edge``, without branches, so that it stays symbolic in
    ``torch.export``: round(h * min(L / max(h, w), S / min(h, w))) =
    min(L, round(L h / w), max(S, round(S h / w))), rounding being monotone."""
    smin, smax = torch.sym_min, torch.sym_max
    new_h = smin(smin(long_edge, round_div(long_edge * h, w)),
                 smax(short_edge, round_div(short_edge * h, w)))
    new_w = smin(smin(long_edge, round_div(long_edge * w, h)),
                 smax(short_edge, round_div(short_edge * w, h)))
    return new_h, new_w


def ceil_to(n, divisor: int):
    return (n + divisor - 1) // divisor * divisor


def image_steps(cfg) -> Dict:
    """What the config's test pipeline and data preprocessor do to an image, as the app
    program does it: ``resizes`` (('keep_ratio', long, short), ('fixed', h, w) or
    ('multiple', divisor), in order), ``mean`` / ``std`` (in the model's channel order),
    ``bgr`` (the model takes BGR), ``pad_divisor`` / ``pad_size`` / ``pad_val``. ValueError
    naming a test-pipeline step that changes the image in a way the program does not."""
    pipeline = cfg.test_dataloader.dataset.pipeline
    resizes = []
    for step in pipeline:
        kind = step['type'].split('.')[-1]
        if kind in IMAGE_NEUTRAL_STEPS:
            continue
        if kind in PROGRAM_STEPS and step.get('interpolation') not in (None, 'bilinear'):
            raise ValueError(f'test pipeline step {dict(step)}: the app program resizes '
                             f'bilinearly only')
        if kind == 'Resize':
            if step.get('scale') is None or step.get('scale_factor') is not None:
                raise ValueError(f'test pipeline step {dict(step)}: the app program takes a '
                                 f'Resize with a scale (and no scale_factor)')
            scale = (step['scale'], ) * 2 if isinstance(step['scale'], int) else step['scale']
            if step.get('keep_ratio', False):
                resizes.append(('keep_ratio', max(scale), min(scale)))
            else:
                resizes.append(('fixed', scale[1], scale[0]))  # mmcv scales are (w, h)
        elif kind == 'ResizeToMultiple':
            resizes.append(('multiple', step.get('size_divisor', 32)))
        else:
            raise ValueError(f'test pipeline step {kind!r} changes the image in a way the '
                             f'ExecuTorch app program does not reproduce (it takes Resize, '
                             f'ResizeToMultiple and {", ".join(sorted(IMAGE_NEUTRAL_STEPS))})')
    pre = cfg.model.data_preprocessor
    test_cfg = pre.get('test_cfg') or {}
    return dict(resizes=resizes, mean=[float(m) for m in pre.get('mean') or (0, 0, 0)],
                std=[float(s) for s in pre.get('std') or (1, 1, 1)],
                bgr=not pre.get('bgr_to_rgb', False) and not pre.get('rgb_to_bgr', False),
                pad_divisor=test_cfg.get('size_divisor'), pad_size=test_cfg.get('size'),
                pad_val=float(pre.get('pad_val', 0)))


# steps that load or pack the image, or touch only the annotations
IMAGE_NEUTRAL_STEPS = {'LoadImageFromFile', 'LoadImageFromNDArray', 'LoadAnnotations',
                       'PackSegInputs', 'InferencerLoader', 'CheckedLoadImageFromFile',
                       'CheckedLoadSegAnnotations'}
# the test-pipeline steps the app program does itself
PROGRAM_STEPS = {'Resize', 'ResizeToMultiple'}


LIST_ENTRIES = ('min_size', 'max_size', 'resized_size', 'output_names', 'class_names')


def load_program(path: str):
    """The ExecuTorch program in ``path`` (an ``executorch.runtime.Program``) and its
    contract (every constant method's value); ValueError naming the file if it is unreadable
    or carries no contract."""
    require_executorch()
    from executorch.runtime import Runtime
    path = os.fspath(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'ExecuTorch program {path!r} does not exist')
    if not _LOADED:
        set_threads()
        _LOADED.append(True)
    try:
        program = Runtime.get().load_program(path)
    except Exception as error:  # RuntimeError from the loader: truncated, not a program
        raise ValueError(f'{path!r} is not a readable ExecuTorch program ({os.path.getsize(path)} '
                         f'bytes; {type(error).__name__}: {error}): truncated or not a .pte; '
                         f'export one with tools/export_executorch.py') from error
    names = program.method_names
    missing = [n for n in ('contract_version', 'kind', 'output_names') if n not in names]
    if missing:
        raise ValueError(f'{path!r} is an ExecuTorch program without this project\'s contract '
                         f'(no constant method {", ".join(missing)}): export it with '
                         f'tools/export_executorch.py')
    contract = {}
    for name in sorted(names - {'forward'}):
        value = list(program.load_method(name).execute([]))
        contract[name] = value if name in LIST_ENTRIES else value[0]
    return program, contract


_LOADED = []  # whether this process has loaded a program (then the pool stays as it is)


def set_threads(threads: Optional[int] = None) -> int:
    """Size ExecuTorch's process-wide thread pool to ``threads`` (None: torch's setting);
    RuntimeError once a program is loaded (resizing it then crashed ExecuTorch 1.5.1)."""
    from executorch.extension.pybindings import portable_lib
    threads = threads or torch.get_num_threads()
    current = portable_lib._threadpool_get_thread_count()
    if current != threads:
        if _LOADED:
            raise RuntimeError(f'ExecuTorch\'s thread pool has {current} threads and programs '
                               f'are loaded: it cannot take {threads} in this process (run '
                               f'each thread count in its own process)')
        portable_lib._unsafe_reset_threadpool(threads)
    return threads


class ExecuTorchSessions:
    """The ExecuTorch counterpart of ``runtime.OnnxSessions`` (one loaded ``forward``
    method, its outputs final); ``threads``: ``set_threads`` (None: as sized at the first
    load). A program runs in the precision it was exported in."""

    def __init__(self, path: str, threads: Optional[int] = None):
        self.path, self.threads = os.fspath(path), threads
        require_executorch()
        if threads is not None:
            set_threads(threads)
        self.program, self.contract = load_program(self.path)
        self.method = self.program.load_method('forward')
        self.input_names = ['image' if self.contract['input_layout'] == 'HWC' else 'input']
        self.input_name = self.input_names[0]
        self.output_names = list(self.contract['output_names'])
        self.resize_mode = None

    def run(self, image: torch.Tensor) -> List[torch.Tensor]:
        check_input_size(self.contract, image, self.path)
        return list(self.method.execute([image.detach().cpu().contiguous()]))


def check_input_size(contract: Dict, image: torch.Tensor, path: str) -> None:
    """Raise ValueError naming ``path`` unless the program of ``contract`` takes ``image``'s
    height and width (``fits_contract``)."""
    hw = tuple(image.shape[:2] if contract['input_layout'] == 'HWC' else image.shape[2:])
    if fits_contract(contract, hw):
        return
    low, high = contract['min_size'], contract['max_size']
    allowed = f'exactly {low[0]}x{low[1]}' if low == high else \
        f'{low[0]}x{low[1]} to {high[0]}x{high[1]}'
    if low != high and contract.get('resized_size'):
        resized = contract['resized_size']
        allowed = (f'{allowed} that the test pipeline\'s keep-ratio Resize makes '
                   f'{resized[0]}x{resized[1]} (one aspect ratio; {"x".join(map(str, hw))} '
                   f'becomes {"x".join(map(str, resized_size(contract, hw)))})')
    raise ValueError(f'{path!r} takes images of {allowed} (height x width), not '
                     f'{hw[0]}x{hw[1]}')


def resized_size(contract: Dict, hw: Sequence[int]) -> Tuple[int, int]:
    """What the keep-ratio Resize of a detector program's test pipeline makes of ``hw``."""
    _, long_edge, short_edge = json.loads(contract['image_steps'])['resizes'][0]
    return tuple(keep_ratio_size(hw[0], hw[1], long_edge, short_edge))


def fits_contract(contract: Dict, hw: Sequence[int]) -> bool:
    """Whether the program of ``contract`` takes images of height and width ``hw``: within
    its size range and, for a detector program, resized to its ``resized_size``."""
    low, high = contract['min_size'], contract['max_size']
    if not all(a <= s <= b for s, a, b in zip(hw, low, high)):
        return False
    resized = contract.get('resized_size')
    return low == high or not resized or list(resized_size(contract, hw)) == list(resized)


def detector_image_steps(cfg) -> Dict:
    """``image_steps`` of a detector config: mmdet's data preprocessor pads to
    ``pad_size_divisor`` with ``pad_value``. Raises ValueError unless the test pipeline
    resizes once, keeping the ratio (what boxes are rescaled back through)."""
    pipeline = [s for s in cfg.test_dataloader.dataset.pipeline
                if s['type'].split('.')[-1] != 'PackDetInputs']
    steps = image_steps(type(cfg)(dict(test_dataloader=dict(dataset=dict(pipeline=pipeline)),
                                       model=cfg.model)))
    if [s[0] for s in steps['resizes']] != ['keep_ratio']:
        raise ValueError(f'test pipeline resizes {steps["resizes"]}: a detector app program '
                         f'takes exactly one keep-ratio Resize')
    pre = cfg.model.data_preprocessor
    steps.update(pad_divisor=pre.get('pad_size_divisor', 1) or 1, pad_size=None,
                 pad_val=float(pre.get('pad_value', 0)))
    return steps


def cut_padding(outputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A detector program's outputs by name, the rows from ``num_detections`` on cut off."""
    count = int(outputs['num_detections'][0])
    return dict(outputs, **{name: outputs[name][:count] for name in
                            ('boxes', 'scores', 'labels', 'masks') if name in outputs})


def program_image_steps(cfg) -> Dict:
    """What an app program of ``cfg`` does to an image (``image_steps`` or
    ``detector_image_steps``; after ``feed_original_images``: the steps it took out)."""
    if cfg.get('program_image_steps'):
        return json.loads(cfg.program_image_steps)
    if toolbox_of(cfg) == 'mmdet':
        return detector_image_steps(cfg)
    return image_steps(cfg)


def model_head(cfg):
    """The config's head that predicts the classes: the (last) decode head, the bbox head or
    the RoI head's bbox head."""
    model = cfg.model
    head = model.get('decode_head') or model.get('bbox_head') or model.roi_head.bbox_head
    return head[-1] if isinstance(head, (list, tuple)) else head


def check_program_config(contract: Dict, cfg, path: str) -> None:
    """Raise ValueError naming ``path`` unless its app program was exported from a config
    like ``cfg``: of its toolbox, with the same classes (names and count) and test-time
    image steps (``program_image_steps``), what running it with ``cfg``'s data depends on."""
    origin = f'{path!r} (exported from {contract.get("config_name")!r})'
    toolbox = {'segmentor': 'mmseg', 'detector': 'mmdet'}.get(contract['kind'])
    if toolbox != toolbox_of(cfg):
        raise ValueError(f'{origin} is a {contract["kind"]} program, but the config is an '
                         f'{toolbox_of(cfg)} one; tools/test.py and tools/infer.py run '
                         f'segmentor (mmseg) and detector (mmdet) app programs')
    count = model_head(cfg).num_classes
    names = list(contract.get('class_names') or [])
    if len(names) != count:
        raise ValueError(f'{origin} predicts {len(names)} classes, but the config\'s head '
                         f'has {count}: give the config the program was exported from')
    config_names = [str(c) for c in (default_dataset_meta(cfg) or {}).get('classes') or ()]
    if len(config_names) == count and config_names != names:
        raise ValueError(f'{origin} has classes {names}, the config {config_names}: give the '
                         f'config the program was exported from')
    steps = program_image_steps(cfg)
    stored = json.loads(contract.get('image_steps') or 'null')
    if stored != json.loads(json.dumps(steps)):
        raise ValueError(f'{origin} prepares images as {stored}, but the config as {steps}: '
                         f'give the config the program was exported from, or export again')


def feed_original_images(cfg) -> None:
    """Make the config's test pipeline give the app program the original image, in place:
    the resizes the program does itself (``PROGRAM_STEPS``) taken out, its image steps kept
    in ``cfg.program_image_steps`` (``program_image_steps``)."""
    cfg.program_image_steps = json.dumps(program_image_steps(cfg))
    dataset = cfg.test_dataloader.dataset
    dataset.pipeline = [step for step in dataset.pipeline
                        if step['type'].split('.')[-1] not in PROGRAM_STEPS]


register_runtime(RuntimeSpec(
    'executorch', (PTE_SUFFIX, ), PRECISIONS,
    open=lambda path, precision, device, threads, low_resolution: ExecuTorchSessions(
        path, threads),
    check=load_program, precision_of=lambda path: load_program(path)[1]['precision'],
    export_tool='tools/export_executorch.py',
    install='pip install -r requirements/executorch.txt', app_program=True))
