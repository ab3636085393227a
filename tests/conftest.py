import functools
import http.server
import json
import os
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / 'data'  # reference data from the original (README.md)

# Tests never download: the release URLs the configs name resolve into this (absent) mirror
# folder, so a test that reaches one fails at once with the error a user would see offline.
os.environ['MMREPVIT_RELEASE_MIRROR'] = str(DATA / 'no_release_files_here')

# Nor do they send OpenVINO telemetry: with openvino-telemetry importable, `import openvino`
# forks the test process from a thread to post an event (docs/deployment.md, "No telemetry").
# OpenVINO uses its stub when the import fails.
sys.modules.setdefault('openvino_telemetry', None)

# at most 2 threads per test process, fewer when pytest-xdist runs several on the same cores
WORKERS = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // WORKERS)))


@pytest.fixture(scope='session')
def tiny_golden():
    return torch.load(DATA / 'repvit_tiny_official_golden.pth', weights_only=True)


@pytest.fixture(params=['current', 'legacy'])
def golden(request, tiny_golden):
    """One tiny golden case (current or legacy blocks) plus what rebuilds it here: ``arch``
    for ``RepViT(arch)``, ``name`` for tests that register it as a named variant, ``layout``."""
    legacy = request.param == 'legacy'
    return dict(tiny_golden[request.param], input=tiny_golden['input'], cfgs=tiny_golden['cfgs'],
                arch=dict(tiny_golden['arch'], legacy=legacy),
                name='tiny_legacy' if legacy else 'tiny',
                layout='official_legacy' if legacy else 'official')


def randomise_bn(model, seed=0):
    """Non-trivial norm statistics and affine terms, so that fusing is actually exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


@pytest.fixture(scope='module')
def one_torch_thread():
    """One thread for PyTorch (and ONNX Runtime, which follows it) in a module: with two
    OpenMP threads on this 2-core machine, another busy process made a demo Mask R-CNN test
    step 15x slower (5 s, not 0.3 s); the deployment tests compare outputs, not speed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_options(iters=3):
    """Config overrides that shrink a demo job to ``iters`` iterations in-process."""
    opts = {'train_cfg.max_iters': iters, 'train_cfg.val_interval': iters,
            'default_hooks.checkpoint.interval': iters, 'default_hooks.logger.interval': 1}
    for split in ('train', 'val', 'test'):
        opts[f'{split}_dataloader.num_workers'] = 0
        opts[f'{split}_dataloader.persistent_workers'] = False
    return opts


@pytest.fixture(scope='session')
def demo_run(tmp_path_factory):
    """The demo's whole path (train, test, fuse, test fused, picture) on a tiny dataset, once
    per test session: Mask R-CNN and Semantic FPN with RepViT-M1.1 after 3 training iterations
    (BatchNorm statistics moved off their initial values), plain and fused checkpoints.
    Built by the first pytest-xdist process that needs it, in the folder the processes share;
    the others wait for it and read its summary."""
    from filelock import FileLock

    from mmrepvit.demo.run import run_demo
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get('PYTEST_XDIST_WORKER'):
        shared = shared.parent  # basetemp/popen-gwN -> basetemp, shared by the processes
    root = shared / 'demo_run'
    data_root, work_dir = str(root / 'data'), str(root / 'work')
    done = root / 'rows.json'
    with FileLock(str(shared / 'demo_run.lock')):
        if not done.exists():
            rows = run_demo(work_dir, data_root,
                            data_kwargs=dict(num_train=6, num_val=3, progress=False),
                            cfg_options={'maskrcnn': tiny_options(), 'fpn': tiny_options()},
                            programs=())  # the program stage: test_tools.py, marked slow
            done.write_text(json.dumps(rows))
    rows = json.loads(done.read_text())
    return dict(rows={r['job']: r for r in rows}, data_root=data_root, work_dir=work_dir)


@pytest.fixture
def tiny_zoo(monkeypatch, tiny_golden):
    """Both tiny golden archs as named variants: the converter takes published names only,
    and finding the arch from the weights must tell the two apart."""
    from mmrepvit.models.backbones.repvit import ARCH_ZOO
    for name, legacy in (('tiny', False), ('tiny_legacy', True)):
        monkeypatch.setitem(ARCH_ZOO, name, dict(tiny_golden['arch'], legacy=legacy))


class FileServer:
    """``http.server`` on 127.0.0.1 serving ``folder`` at ``url``; ``requests`` counts the GETs
    of each path."""

    def __init__(self, folder):
        self.folder, self.requests = Path(folder), Counter()
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):

            def do_GET(self):
                requests[self.path] += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ('127.0.0.1', 0), functools.partial(Handler, directory=str(folder)))
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def file_server(tmp_path):
    folder = tmp_path / 'served'
    folder.mkdir()
    server = FileServer(folder)
    yield server
    server.close()
