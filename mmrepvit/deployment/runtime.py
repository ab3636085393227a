"""Deployed inference: an exported ``.onnx`` run by ONNX Runtime behind the PyTorch model's
interface, so that anything that calls ``model.test_step(data)`` (mmengine's runner, mmdet's
``DetInferencer``, mmseg's ``MMSegInferencer``) runs the deployed model unchanged.

The wrappers keep everything that is not the network on the PyTorch side, exactly as the
toolbox does it: the config's data preprocessor (normalisation, BGR->RGB, padding) before,
and after, the same rescaling and mask pasting (mmdet) or padding crop and resize to the
original image (mmseg). What runs inside the graph is the network and, for detectors,
mmdeploy's NMS post-processing (docs/deployment.md lists how it differs from mmdet's).
"""
import importlib
import os
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData, PixelData

from ..config import default_dataset_meta, toolbox_of
from .executorch_runtime import (
    PTE_SUFFIX,
    ExecuTorchSessions,
    check_program_config,
    load_program,
)
from .openvino_runtime import (
    PRECISIONS,
    RUNTIMES,
    OpenVinoSessions,
    check_runtime,
    describe_run,
    read_openvino,
    resolve_precision,
)
from .seg_postprocess import cut_final_resize_onnx, low_resolution_supported, resize_argmax

DETECTOR_OUTPUTS = ('dets', 'labels')  # + 'masks' (mmdeploy's end2end layout)
SEGMENTOR_OUTPUTS = ('logits', )  # mmrepvit's own export: logits at the input size


def ort_session(onnx_file: Union[str, bytes], device: str = 'cpu', threads: Optional[int] = None):
    """An ONNX Runtime session with all graph optimisations; ``threads`` intra-op threads
    (default: torch's current setting, so both frameworks get the same share of the CPU).
    ``onnx_file``: a path, or a serialised model."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # no warnings about initializers / shape inference
    # ONNX Runtime's pool threads otherwise spin on the cores for a while after each run,
    # taking them from whatever runs next (PyTorch in an interleaved benchmark, the rest of
    # a pipeline): on 2 cores that made the next PyTorch call several times slower
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    providers = ['CPUExecutionProvider']
    if str(device).startswith('cuda'):
        if 'CUDAExecutionProvider' not in ort.get_available_providers():
            raise RuntimeError(f'device={device!r}, but this onnxruntime has no CUDA provider '
                               f'(install onnxruntime-gpu)')
        index = int(str(device).partition(':')[2] or 0)
        providers = [('CUDAExecutionProvider', dict(device_id=index))] + providers
    model = onnx_file if isinstance(onnx_file, bytes) else os.fspath(onnx_file)
    return ort.InferenceSession(model, options, providers=providers)


class OnnxSessions:
    """An ONNX file's sessions, one per thread count: ``threads=None`` follows torch's
    current setting at each call (so ``torch.set_num_threads`` and the benchmark's thread
    groups apply to ONNX Runtime too), a number fixes it. ``low_resolution``: a segmentor's
    graph without its final resize (``seg_postprocess``); ``resize_mode`` is then the
    removed resize's coordinate mode (None: nothing removed)."""

    def __init__(self, onnx_file: str, device: str = 'cpu', threads: Optional[int] = None,
                 low_resolution: bool = False):
        self.onnx_file, self.device, self.threads = os.fspath(onnx_file), device, threads
        self.model, self.resize_mode = self.onnx_file, None
        if low_resolution:
            import onnx
            graph = onnx.load(self.onnx_file)
            self.resize_mode = cut_final_resize_onnx(graph)
            if self.resize_mode is not None:
                self.model = graph.SerializeToString()
        self._sessions = {}
        first = self.session
        self.input_names = [i.name for i in first.get_inputs()]
        self.input_name = self.input_names[0]
        self.output_names = [o.name for o in first.get_outputs()]

    @property
    def session(self):
        n = self.threads or torch.get_num_threads()
        if n not in self._sessions:
            self._sessions[n] = ort_session(self.model, self.device, n)
        return self._sessions[n]

    def run(self, image: torch.Tensor, **extra: np.ndarray) -> List[torch.Tensor]:
        feed = {self.input_name: image.detach().cpu().contiguous().numpy()
                .astype(np.float32, copy=False)}
        feed.update(extra)
        return [torch.from_numpy(o) for o in self.session.run(None, feed)]


def make_sessions(model_file: str, runtime: str = 'onnxruntime', precision: Optional[str] = None,
                  device: str = 'cpu', threads: Optional[int] = None,
                  low_resolution: bool = False):
    """``model_file``'s sessions in ``runtime`` (``OnnxSessions``, ``OpenVinoSessions`` or
    ``ExecuTorchSessions``),
    in ``precision`` (checked against the file and the CPU by ``resolve_precision``)."""
    precision = resolve_precision(runtime, model_file, precision)
    if runtime == 'executorch':
        if str(device) != 'cpu' or low_resolution:
            raise ValueError(f'device={device!r}, low_resolution={low_resolution}: runtime '
                             f'executorch runs whole programs on the CPU (device cpu)')
        sessions = ExecuTorchSessions(model_file, threads)
    elif runtime == 'openvino':
        if str(device) != 'cpu':
            raise ValueError(f'device={device!r}: runtime openvino runs on the CPU here '
                             f'(device cpu)')
        sessions = OpenVinoSessions(model_file, precision, threads, low_resolution)
    else:
        sessions = OnnxSessions(model_file, device, threads, low_resolution)
    sessions.runtime, sessions.precision = runtime, precision
    return sessions


class OnnxBackbone(torch.nn.Module):
    """A backbone's ONNX file called like the backbone: images in, feature maps out, in
    ``runtime`` and ``precision`` (``make_sessions``)."""

    def __init__(self, onnx_file: str, threads: Optional[int] = None,
                 runtime: str = 'onnxruntime', precision: Optional[str] = None):
        super().__init__()
        self.sessions = make_sessions(onnx_file, runtime, precision, threads=threads)

    def forward(self, x: torch.Tensor) -> tuple:
        return tuple(self.sessions.run(x))


class OnnxModel(BaseModel):
    """The parts every wrapper shares: the session, the data preprocessor, ``dataset_meta``
    and ``cfg`` (what inferencers and the runner read from a model). Prediction only."""

    def __init__(self, sessions: 'OnnxSessions', data_preprocessor, cfg: Config,
                 dataset_meta: Optional[dict]):
        super().__init__(data_preprocessor=data_preprocessor)
        self.sessions = sessions
        self.cfg = cfg
        self.dataset_meta = dataset_meta

    def run(self, image: torch.Tensor, **extra: np.ndarray) -> List[torch.Tensor]:
        """One image (1, 3, H, W) through the graph; outputs as CPU tensors."""
        return self.sessions.run(image, **extra)

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'predict'):
        if mode != 'predict':
            raise ValueError(f'a deployed model only predicts (mode={mode!r})')
        if data_samples is None:
            raise ValueError('data_samples (with their image metainfo) are needed')
        # the graph takes one image; every image keeps the batch's padding, as in PyTorch
        return [self.predict_one(inputs[i:i + 1], sample)
                for i, sample in enumerate(data_samples)]

    def predict_one(self, image, data_sample):
        raise NotImplementedError

    def train(self, mode: bool = True):
        return super().train(False)  # nothing to train; the preprocessor stays in test mode


class OnnxDetector(OnnxModel):
    """mmdeploy's end2end detector graph (dets, labels[, masks]) with mmdet's output format:
    ``pred_instances`` with bboxes / scores / labels (and boolean ``masks`` at the original
    image size) in original-image pixels."""

    def __init__(self, sessions, data_preprocessor, cfg, dataset_meta):
        super().__init__(sessions, data_preprocessor, cfg, dataset_meta)
        rcnn = (cfg.model.get('test_cfg') or {}).get('rcnn') or {}
        self.mask_thr_binary = rcnn.get('mask_thr_binary', 0.5)

    def predict_one(self, image, data_sample):
        meta = data_sample.metainfo
        h, w = meta['img_shape'][:2]
        extra = {}
        if 'img_shape' in self.sessions.input_names:  # mmrepvit's export: clip to the image
            extra['img_shape'] = np.array([h, w], dtype=np.int64)
        outputs = self.run(image, **extra)
        dets, labels = outputs[0][0], outputs[1][0]
        keep = dets[:, 4] > 0  # the graph pads with zero-score rows
        dets, labels = dets[keep], labels[keep].long()
        # a graph exported by mmdeploy's own tools clips to the padded input: clip again
        bboxes = dets[:, :4].clone()
        bboxes[:, 0::2] = bboxes[:, 0::2].clamp(0, w)
        bboxes[:, 1::2] = bboxes[:, 1::2].clamp(0, h)
        scale = meta.get('scale_factor')
        if scale is not None:
            bboxes = bboxes / bboxes.new_tensor(scale).repeat(2)
        results = InstanceData(bboxes=bboxes, scores=dets[:, 4], labels=labels)
        if len(outputs) > 2:
            results.masks = paste_masks(outputs[2][0][keep], bboxes, meta['ori_shape'][:2],
                                        self.mask_thr_binary)
        data_sample.pred_instances = results
        return data_sample


def paste_masks(probs: torch.Tensor, bboxes: torch.Tensor, shape: Sequence[int],
                threshold: float = 0.5) -> torch.Tensor:
    """(N, M, M) mask probabilities into (N, H, W) boolean masks at their boxes, as mmdet's
    FCNMaskHead does on CPU (one mask at a time, only the box's neighbourhood sampled)."""
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
    h, w = int(shape[0]), int(shape[1])
    masks = torch.zeros(len(probs), h, w, dtype=torch.bool)
    for i in range(len(probs)):
        pasted, (rows, cols) = _do_paste_mask(probs[i:i + 1, None], bboxes[i:i + 1], h, w,
                                              skip_empty=True)
        masks[i, rows, cols] = pasted[0] >= threshold
    return masks


class _Threshold:
    def __init__(self, threshold):
        self.threshold = threshold


class OnnxSegmentor(OnnxModel):
    """mmrepvit's segmentor graph (image -> logits at the input size) with mmseg's output
    format: ``seg_logits`` and ``pred_sem_seg`` at the original image size."""

    def __init__(self, sessions, data_preprocessor, cfg, dataset_meta):
        super().__init__(sessions, data_preprocessor, cfg, dataset_meta)
        head = _last_head(cfg)
        self.align_corners = head.get('align_corners', False)
        threshold = head.get('threshold')
        self.decode_head = _Threshold(0.3 if threshold is None else threshold)  # mmseg's

    def predict_one(self, image, data_sample):
        from mmseg.models.segmentors import BaseSegmentor
        logits = self.run(image)[0]
        meta = data_sample.metainfo
        if self.sessions.resize_mode is not None:  # the graph stops before its last resize
            if logits.shape[1] > 1 and not meta.get('flip'):
                classes = resize_argmax(logits[0], image.shape[2:],
                                        meta.get('img_padding_size',
                                                 meta.get('padding_size', [0] * 4)),
                                        meta['ori_shape'][:2], self.align_corners)
                data_sample.set_data(dict(pred_sem_seg=PixelData(data=classes[None])))
                return data_sample
            logits = F.interpolate(logits, size=image.shape[2:], mode='bilinear',
                                   align_corners=self.align_corners)  # what the graph did
        # mmseg's own post-processing (padding crop, flip, resize to ori_shape, argmax), run
        # with this wrapper as ``self``: it reads only align_corners and decode_head.threshold
        return BaseSegmentor.postprocess_result(self, logits, [data_sample])[0]


class ProgramSegmentor(OnnxModel):
    """An ExecuTorch app program (``executorch_program.SegmentorApp``: uint8 RGB image
    [H, W, 3] -> classes [H, W]) with mmseg's output format: ``pred_sem_seg`` at the original
    image size (no ``seg_logits``: the program gives classes only).

    The program resizes and normalises the image itself, so it is fed the original image:
    its data preprocessor only collects the images (no normalisation, no BGR->RGB), and the
    test pipeline must not resize them (``executorch_runtime.feed_original_images``, which
    ``tools/test.py`` and ``tools/infer.py`` apply). The images come as the pipeline loads
    them, uint8 BGR (3, H, W); the wrapper gives them to the program as an app does."""

    def predict_one(self, image, data_sample):
        image = image[0]
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f'an ExecuTorch app program takes uint8 images (3, H, W) as the '
                             f'pipeline loads them, got {image.dtype} {tuple(image.shape)}')
        meta = data_sample.metainfo
        if tuple(image.shape[1:]) != tuple(meta['ori_shape'][:2]):
            raise ValueError(f'the image is {tuple(image.shape[1:])}, not its original size '
                             f'{tuple(meta["ori_shape"][:2])}: the test pipeline resized it '
                             f'(use executorch_runtime.feed_original_images)')
        rgb = image.flip(0).permute(1, 2, 0).contiguous()
        classes = self.run(rgb)[0].long()
        data_sample.set_data(dict(pred_sem_seg=PixelData(data=classes[None])))
        return data_sample


def _last_head(cfg: Config) -> dict:
    head = cfg.model.decode_head
    return head[-1] if isinstance(head, (list, tuple)) else head


# the files a deployed model is read from: an export (onnxruntime, openvino), an OpenVINO IR
# (openvino), an ExecuTorch program (executorch)
DEPLOYED_SUFFIXES = ('.onnx', '.xml', PTE_SUFFIX)


def is_deployed_file(path: str) -> bool:
    """Whether ``path`` names an exported model (``DEPLOYED_SUFFIXES``), not a checkpoint."""
    return os.fspath(path).endswith(DEPLOYED_SUFFIXES)


def check_onnx_file(path: str, fuse: bool = False, runtime: Optional[str] = None) -> None:
    """Raise ValueError naming ``path`` unless it is a readable ONNX model (or, with
    ``runtime='openvino'``, OpenVINO IR; with ``runtime='executorch'``, an ExecuTorch program
    with its contract), or if asked to ``fuse`` it (an exported model is fused already)."""
    if fuse:
        raise ValueError(f'--fuse with {path!r}: an exported ONNX model is fused already')
    if (runtime == 'executorch') != os.fspath(path).endswith(PTE_SUFFIX):
        raise ValueError(f'{path!r} with runtime {runtime or "onnxruntime"}: runtime '
                         f'executorch runs ExecuTorch programs ({PTE_SUFFIX}, '
                         f'tools/export_executorch.py), and only it')
    if runtime == 'executorch':
        load_program(path)
        return
    if os.fspath(path).endswith('.xml'):
        if runtime != 'openvino':
            raise ValueError(f'{path!r} is an OpenVINO IR: run it with runtime openvino '
                             f'(--runtime openvino)')
        read_openvino(path)
        return
    import onnx
    try:
        onnx.checker.check_model(path)
    except Exception as error:  # DecodeError, ValidationError, OSError ...
        raise ValueError(f'{path!r} is not a readable ONNX model ({type(error).__name__}: '
                         f'{error}); export one with tools/export_onnx.py') from error


def graph_outputs(model_file: str) -> List[str]:
    """The output names of an ONNX file (or OpenVINO IR, or ExecuTorch program), read without
    building a session."""
    if os.fspath(model_file).endswith(PTE_SUFFIX):
        return list(load_program(model_file)[1]['output_names'])
    if os.fspath(model_file).endswith('.xml'):
        return [o.get_any_name() for o in read_openvino(model_file).outputs]
    import onnx
    return [o.name for o in onnx.load(model_file, load_external_data=False).graph.output]


def add_runtime_arguments(parser) -> None:
    """``--runtime`` and ``--precision``, as tools/test.py and tools/infer.py take them."""
    parser.add_argument('--runtime', choices=list(RUNTIMES),
                        help='with an exported .onnx: the runtime that runs it (default '
                        'onnxruntime; openvino: make install-openvino); executorch: an '
                        'ExecuTorch program (.pte, tools/export_executorch.py)')
    parser.add_argument('--precision', choices=list(PRECISIONS),
                        help='with an exported .onnx: f32 (a float32 file\'s default), bf16 '
                        '(openvino, on a CPU with AVX512-BF16 or AMX), int8 (an int8 file, '
                        'its default); anything the file or CPU cannot give is an error')


def check_deployed_options(model_file: str, deployed: bool, runtime: Optional[str],
                           precision: Optional[str]) -> None:
    """``runtime`` / ``precision`` apply to an exported ``.onnx`` only: raise ValueError
    naming ``model_file`` if given with a checkpoint (or invalid)."""
    if runtime is not None:
        check_runtime(runtime)
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f'precision={precision!r}: valid are {", ".join(PRECISIONS)}')
    if not deployed and (runtime or precision):
        raise ValueError(f'--runtime / --precision run an exported .onnx, but {model_file!r} '
                         f'is a checkpoint: export it with tools/export_onnx.py first')


def build_onnx_model(config: Union[str, Config], onnx_file: str, device: str = 'cpu',
                     threads: Optional[int] = None, dataset_meta: Optional[dict] = None,
                     runtime: str = 'onnxruntime', precision: Optional[str] = None,
                     seg_logits: bool = True) -> OnnxModel:
    """A model whose ``test_step(data)`` runs ``onnx_file`` (exported from ``config`` by
    ``tools/export_onnx.py``) in ``runtime`` (``'onnxruntime'`` or ``'openvino'``; or an
    ExecuTorch app program, ``.pte``, in ``'executorch'``: ``ProgramSegmentor``) and
    returns the toolbox's data samples:
    ``DetDataSample.pred_instances`` (bboxes, scores, labels[, masks]) for a detector,
    ``SegDataSample.pred_sem_seg`` / ``seg_logits`` for a segmentor, as the PyTorch model's.

    Swap it into an inferencer after building that from the same config::

        inferencer = DetInferencer(config, weights)
        inferencer.model = build_onnx_model(config, 'maskrcnn.onnx')

    ``threads``: the runtime's threads (default: torch's current setting, read at every
    call). ``dataset_meta``: class names and palette (default: from the config's test
    dataset). ``precision``: ``'f32'``, ``'bf16'`` (openvino, on a CPU with AVX512-BF16 or
    AMX) or ``'int8'`` (an int8 file); None: what the file holds. Never left to the runtime:
    anything the file, runtime or CPU cannot give is an error. ``seg_logits=False``: a
    segmentor predicts only the classes (``pred_sem_seg``), computed without full-size
    logit maps (``seg_postprocess``), as evaluation and pictures need.
    """
    check_runtime(runtime)

    cfg = Config.fromfile(config) if not isinstance(config, Config) else config
    scope = toolbox_of(cfg)
    init_default_scope(scope)
    models = importlib.import_module(f'{scope}.registry').MODELS
    preprocessor = models.build(cfg.model.data_preprocessor)
    if runtime == 'executorch':  # an app program: the image as an app gives it, classes out
        check_program_config(load_program(onnx_file)[1], cfg, onnx_file)
        preprocessor = BaseDataPreprocessor()  # the program prepares the image itself
        cls, expected = ProgramSegmentor, 'mmseg'
    else:
        names = tuple(graph_outputs(onnx_file))
        if names[:2] == DETECTOR_OUTPUTS:
            cls, expected = OnnxDetector, 'mmdet'
        elif names == SEGMENTOR_OUTPUTS:
            cls, expected = OnnxSegmentor, 'mmseg'
        else:
            raise ValueError(f'{onnx_file}: outputs {names} are neither a detector\'s '
                             f'{DETECTOR_OUTPUTS} (+ masks) nor a segmentor\'s '
                             f'{SEGMENTOR_OUTPUTS}: export whole models with '
                             f'tools/export_onnx.py')
    if scope != expected:
        raise ValueError(f'{onnx_file} holds an {expected} model, but the config is {scope}')
    low_resolution = cls is OnnxSegmentor and not seg_logits
    sessions = make_sessions(onnx_file, runtime, precision, device, threads, low_resolution)
    if low_resolution and not low_resolution_supported(
            sessions.resize_mode, _last_head(cfg).get('align_corners', False)):
        sessions = make_sessions(onnx_file, runtime, precision, device, threads)
    print_log(f'{onnx_file}: {describe_run(runtime, sessions.precision)}', logger='current')
    meta = dataset_meta if dataset_meta is not None else default_dataset_meta(cfg)
    model = cls(sessions, preprocessor, cfg, meta)
    return model.to(device if str(device).startswith('cuda') else 'cpu').eval()
