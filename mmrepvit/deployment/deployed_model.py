"""``open_model``: an exported file (``.onnx``, OpenVINO ``.xml``, ExecuTorch ``.pte``) behind
the PyTorch model's ``test_step``, so the runner and the inferencers run it unchanged. The
config's data preprocessor runs before the graph and the toolbox's own rescaling / mask pasting
(mmdet) or crop and resize (mmseg) after it; an app program is fed the original image.
"""
import importlib
import os
import warnings
from types import SimpleNamespace
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
    check_program_config,
    cut_padding,
    load_program,
    model_head,
)
from .openvino_runtime import read_openvino
from .runtime import (
    DEFAULT_RUNTIME,
    RUNTIMES,
    check_run_options,
    deployed_suffixes,
    describe_run,
    file_owner,
    resolve_precision,
    runs_app_programs,
)
from .seg_postprocess import low_resolution_supported, resize_argmax

DETECTOR_OUTPUTS = ('dets', 'labels')  # + 'masks' (mmdeploy's end2end layout)
SEGMENTOR_OUTPUTS = ('logits', )  # mmrepvit's own export: logits at the input size


def make_sessions(model_file: str, runtime: str = DEFAULT_RUNTIME,
                  precision: Optional[str] = None, device: str = 'cpu',
                  threads: Optional[int] = None, low_resolution: bool = False):
    """``model_file``'s sessions in ``runtime`` in ``precision`` (``resolve_precision``)."""
    precision = resolve_precision(runtime, model_file, precision)
    spec = RUNTIMES[runtime]
    if not spec.cuda and str(device) != 'cpu':
        raise ValueError(f'device={device!r}: runtime {runtime} runs on the CPU here (device '
                         f'cpu)')
    sessions = spec.open(os.fspath(model_file), precision, device, threads, low_resolution)
    sessions.runtime, sessions.precision = runtime, precision
    return sessions


class OnnxBackbone(torch.nn.Module):
    """A backbone's exported file called like the backbone: images in, feature maps out."""

    def __init__(self, onnx_file: str, threads: Optional[int] = None,
                 runtime: str = DEFAULT_RUNTIME, precision: Optional[str] = None):
        super().__init__()
        self.sessions = make_sessions(onnx_file, runtime, precision, threads=threads)

    def forward(self, x: torch.Tensor) -> tuple:
        return tuple(self.sessions.run(x))


def graph_outputs(model_file: str) -> List[str]:
    """The output names of an ONNX file (or OpenVINO IR), read without building a session."""
    if os.fspath(model_file).endswith('.xml'):
        return [o.get_any_name() for o in read_openvino(model_file).outputs]
    import onnx
    return [o.name for o in onnx.load(model_file, load_external_data=False).graph.output]


class DeployedModel(BaseModel):
    """What every wrapper shares: sessions, data preprocessor, ``cfg`` and ``dataset_meta``
    (what inferencers and the runner read). Prediction only."""

    def __init__(self, sessions, data_preprocessor, cfg: Config,
                 dataset_meta: Optional[dict]):
        super().__init__(data_preprocessor=data_preprocessor)
        self.sessions, self.cfg, self.dataset_meta = sessions, cfg, dataset_meta

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


class OnnxDetector(DeployedModel):
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
        outputs = self.sessions.run(image, **extra)
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


class OnnxSegmentor(DeployedModel):
    """mmrepvit's segmentor graph (image -> logits at the input size) with mmseg's output
    format: ``seg_logits`` and ``pred_sem_seg`` at the original image size."""

    def __init__(self, sessions, data_preprocessor, cfg, dataset_meta):
        super().__init__(sessions, data_preprocessor, cfg, dataset_meta)
        head = model_head(cfg)
        self.align_corners = head.get('align_corners', False)
        threshold = head.get('threshold')
        self.decode_head = SimpleNamespace(threshold=0.3 if threshold is None else threshold)

    def predict_one(self, image, data_sample):
        from mmseg.models.segmentors import BaseSegmentor
        logits = self.sessions.run(image)[0]
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


class ProgramModel(DeployedModel):
    """An ExecuTorch app program (uint8 RGB [H, W, 3] in), fed the pipeline's original image
    (uint8 BGR (3, H, W)); it resizes and normalises it itself, so the test pipeline must not
    (``executorch_runtime.feed_original_images``)."""

    def app_image(self, image, meta) -> torch.Tensor:
        image = image[0]
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f'an ExecuTorch app program takes uint8 images (3, H, W) as the '
                             f'pipeline loads them, got {image.dtype} {tuple(image.shape)}')
        if tuple(image.shape[1:]) != tuple(meta['ori_shape'][:2]):
            raise ValueError(f'the image is {tuple(image.shape[1:])}, not its original size '
                             f'{tuple(meta["ori_shape"][:2])}: the test pipeline resized it '
                             f'(use executorch_runtime.feed_original_images)')
        return image.flip(0).permute(1, 2, 0).contiguous()


class ProgramSegmentor(ProgramModel):
    """A segmentor app program (classes [H, W] out): ``pred_sem_seg`` at the original image
    size (no ``seg_logits``: the program gives classes only)."""

    def predict_one(self, image, data_sample):
        classes = self.sessions.run(self.app_image(image, data_sample.metainfo))[0].long()
        data_sample.set_data(dict(pred_sem_seg=PixelData(data=classes[None])))
        return data_sample


class ProgramDetector(ProgramModel):
    """A detector app program (``executorch_detector``): ``pred_instances`` (bboxes in
    original-image pixels, scores, labels, boolean masks), padding cut off; warns once when
    the program's NMS had not converged (``nms_converged`` 0)."""
    warned = False

    def predict_one(self, image, data_sample):
        out = cut_padding(dict(zip(self.sessions.output_names,
                                   self.sessions.run(self.app_image(image, data_sample.metainfo)))))
        if not int(out['nms_converged'][0]) and not self.warned:
            self.warned = True
            warnings.warn(f'{self.sessions.path!r}: the program\'s NMS had not converged on '
                          f'{data_sample.metainfo.get("img_path") or "an image"} (its detections '
                          f'are not exactly greedy NMS\'s): export it with more nms_iterations',
                          stacklevel=2)
        results = InstanceData(bboxes=out['boxes'], scores=out['scores'],
                               labels=out['labels'].long())
        if 'masks' in out:
            results.masks = out['masks'].bool()
        data_sample.pred_instances = results
        return data_sample


def is_deployed_file(path: str) -> bool:
    """Whether ``path`` names a file a runtime runs (``RuntimeSpec.suffixes``), not a
    checkpoint."""
    return file_owner(path) is not None


def check_model_file(path: str, runtime: Optional[str] = None, precision: Optional[str] = None,
                     fuse: bool = False) -> bool:
    """Whether ``path`` is an exported model (else a checkpoint). Raises ValueError naming the
    file or value and what is valid unless ``runtime`` / ``precision`` are valid, given only
    with an exported file that ``runtime`` runs, the file is readable, and not ``fuse``."""
    check_run_options(runtime, precision)
    path = os.fspath(path)
    if not is_deployed_file(path):
        if runtime or precision:
            raise ValueError(f'--runtime / --precision run an exported model '
                             f'({deployed_suffixes()}), but {path!r} is a checkpoint: export '
                             f'it with tools/export_onnx.py or tools/export_executorch.py first')
        return False
    if fuse:
        raise ValueError(f'--fuse with {path!r}: an exported model is fused already')
    spec = RUNTIMES[runtime or DEFAULT_RUNTIME]
    if not path.endswith(spec.suffixes):
        readers = [r.name for r in RUNTIMES.values() if path.endswith(r.suffixes)]
        raise ValueError(f'{path!r} with runtime {spec.name}, which runs '
                         f'{", ".join(spec.suffixes)} files: run it with runtime '
                         f'{" or ".join(readers)} (--runtime {readers[0]})')
    file_owner(path).check(path)
    return True


def open_model(config: Union[str, Config], path: str, runtime: Optional[str] = None,
               precision: Optional[str] = None, threads: Optional[int] = None,
               device: str = 'cpu', seg_logits: bool = True,
               dataset_meta: Optional[dict] = None) -> DeployedModel:
    """The exported file ``path`` of ``config`` as a model whose ``test_step(data)`` runs it in
    ``runtime`` (default onnxruntime) and returns the PyTorch model's data samples
    (docs/deployment.md, "Inference with the exported model"). ``precision``: None: what the
    file holds (``resolve_precision``). ``threads``: default torch's setting at each call.
    ``dataset_meta``: default the config's test dataset's. ``seg_logits=False``: a segmentor
    predicts only ``pred_sem_seg``, without full-size logit maps (``seg_postprocess``)."""
    if not check_model_file(path, runtime, precision):
        raise ValueError(f'{path!r} is a checkpoint: open_model runs exported models '
                         f'({deployed_suffixes()})')
    runtime = runtime or DEFAULT_RUNTIME
    cfg = Config.fromfile(config) if not isinstance(config, Config) else config
    scope = toolbox_of(cfg)
    init_default_scope(scope)
    if runs_app_programs(runtime):  # the image as an app gives it
        contract = load_program(path)[1]
        check_program_config(contract, cfg, path)
        preprocessor = BaseDataPreprocessor()  # the program prepares the image itself
        cls = ProgramDetector if contract['kind'] == 'detector' else ProgramSegmentor
    else:
        names = tuple(graph_outputs(path))
        if names[:2] == DETECTOR_OUTPUTS:
            cls, expected = OnnxDetector, 'mmdet'
        elif names == SEGMENTOR_OUTPUTS:
            cls, expected = OnnxSegmentor, 'mmseg'
        else:
            raise ValueError(f'{path}: outputs {names} are neither a detector\'s '
                             f'{DETECTOR_OUTPUTS} (+ masks) nor a segmentor\'s '
                             f'{SEGMENTOR_OUTPUTS}: export whole models with '
                             f'tools/export_onnx.py')
        if scope != expected:
            raise ValueError(f'{path} holds an {expected} model, but the config is {scope}')
        preprocessor = importlib.import_module(f'{scope}.registry').MODELS.build(
            cfg.model.data_preprocessor)
    low_resolution = cls is OnnxSegmentor and not seg_logits
    sessions = make_sessions(path, runtime, precision, device, threads, low_resolution)
    if low_resolution and not low_resolution_supported(
            sessions.resize_mode, model_head(cfg).get('align_corners', False)):
        sessions = make_sessions(path, runtime, precision, device, threads)
    print_log(f'{path}: {describe_run(runtime, sessions.precision)}', logger='current')
    meta = dataset_meta if dataset_meta is not None else default_dataset_meta(cfg)
    model = cls(sessions, preprocessor, cfg, meta)
    return model.to(device if str(device).startswith('cuda') else 'cpu').eval()
