# `make demo` and `make test` install into .venv/ first (once; a complete .venv/ is left as it is).
PYTHON ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip install --disable-pip-version-check -c requirements/constraints.txt
STAMP := $(VENV)/.installed
MMCV_WHEEL_DIR ?= ../shared/wheels
# e.g. make demo DEMO_ARGS='--threads 1 --work-dir work_dirs/demo_1thread'
DEMO_ARGS ?=
# test processes (pytest-xdist); each takes its share of the cores for torch
TEST_WORKERS ?= 2
# The venv interpreter's wheel tag (e.g. cp311-cp311-linux_x86_64): a prebuilt mmcv is used only
# when its file name carries exactly this tag and SHA256SUMS vouches for it.
WHEEL_TAG_PY := import sys, sysconfig; v = 'cp%d%d' % sys.version_info[:2]; \
  print(f'{v}-{v}{sys.abiflags}-' + sysconfig.get_platform().replace('-', '_').replace('.', '_'))

# mmcv 2.1.0 with its ops into the venv whose python is $(1), installed with pip command $(2):
# the verified prebuilt wheel when there is one, else built from source.
define install_mmcv
@wheel=mmcv-2.1.0-$$($(1) -c "$(WHEEL_TAG_PY)").whl; \
if $(1) -c "import mmcv, mmcv.ops" 2>/dev/null && \
    [ "$$($(1) -c 'import mmcv; print(mmcv.__version__)')" = 2.1.0 ]; then \
  echo "mmcv 2.1.0 with ops already installed"; \
elif [ -f "$(MMCV_WHEEL_DIR)/$$wheel" ] && (cd $(MMCV_WHEEL_DIR) && \
    awk -v f="$$wheel" '$$NF == f || $$NF == "*" f' SHA256SUMS | sha256sum --quiet -c -); then \
  echo "installing mmcv from $(MMCV_WHEEL_DIR)/$$wheel (SHA-256 verified)"; \
  $(2) -q "$(MMCV_WHEEL_DIR)/$$wheel"; \
else \
  echo "no verified $$wheel in $(MMCV_WHEEL_DIR): building mmcv 2.1.0 with its ops" \
       "from source (about 12 minutes on 2 cores)"; \
  MMCV_WITH_OPS=1 MAX_JOBS=$$(nproc) $(2) --no-build-isolation mmcv==2.1.0; \
fi
endef

.PHONY: install demo test test-slow lint clean-venv

install: $(STAMP)

$(STAMP): setup.py requirements/*.txt Makefile
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -q "setuptools<82" wheel ninja
	$(PIP) -q torch==2.13.0
	$(call install_mmcv,$(VPY),$(PIP))
	$(PIP) -q -r requirements/runtime.txt -r requirements/optional.txt -r requirements/tests.txt \
	  -r requirements/lint.txt
	$(PIP) -q --no-deps -r requirements/deploy.txt  # mmdeploy: never allowed to touch torch
	$(PIP) -q --no-deps -r requirements/openvino.txt  # OpenVINO: never allowed to touch numpy
	$(PIP) -q -r requirements/executorch.txt  # with its dependencies; the constraints hold torch
	$(PIP) -q --no-build-isolation --no-deps -e .
	$(VPY) -c "import mmrepvit, mmcv.ops, mmdet, mmseg, pycocotools, mmdeploy, openvino, executorch, torch, numpy; \
	  assert torch.__version__.startswith('2.13.0'), torch.__version__; \
	  assert int(numpy.__version__.split('.')[0]) >= 2, numpy.__version__"
	touch $(STAMP)

demo: install
	$(VPY) tools/demo.py $(DEMO_ARGS)

test: install
	$(VPY) -m pytest -q -n $(TEST_WORKERS) -m "not slow" tests

# the tests marked `slow` (ExecuTorch program exports, every deployment path measured: minutes
# each); CI runs them after `make test`
test-slow: install
	$(VPY) -m pytest -q -n $(TEST_WORKERS) -m slow tests

# ruff with the rules in pyproject.toml (E, F, W, I, B); CI runs it before the tests
lint: install
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)

# Optional: mmdeploy for exporting whole detectors to ONNX (tools/export_onnx.py, tests/test_deployment.py).
# --no-deps so that it can never replace torch; torch's version is checked afterwards.
.PHONY: install-deploy
install-deploy: install
	$(VPY) -m pip install --disable-pip-version-check -q --no-deps -r requirements/deploy.txt
	$(VPY) -c "import torch, mmdeploy; assert torch.__version__.startswith('2.13.0'), torch.__version__; print('mmdeploy', mmdeploy.__version__, 'with torch', torch.__version__)"

# Optional: OpenVINO, the second runtime for exported models (--runtime openvino).
# --no-deps so that it can never replace numpy or torch; both are checked afterwards (numpy 2, as
# `make install` leaves it).
.PHONY: install-openvino
install-openvino: install
	$(VPY) -m pip install --disable-pip-version-check -q --no-deps -r requirements/openvino.txt
	$(VPY) -c "import torch, numpy, openvino; assert torch.__version__.startswith('2.13.0'), torch.__version__; assert int(numpy.__version__.split('.')[0]) >= 2, numpy.__version__; print('openvino', openvino.__version__, 'with torch', torch.__version__, 'numpy', numpy.__version__)"

# numpy 1: setup.py keeps accepting the older stacks GPU users have (numpy < 2, opencv < 4.11, no
# ExecuTorch). .venv-numpy1/ installs mmrepvit[all,tests] under requirements/constraints-numpy1.txt
# and runs a quick subset: checkpoints across the numpy boundary, the registry, a tiny train/test.
NP1_VENV := .venv-numpy1
NP1_VPY := $(NP1_VENV)/bin/python
NP1_PIP := $(NP1_VPY) -m pip install --disable-pip-version-check -c requirements/constraints-numpy1.txt
NP1_TESTS := tests/test_safe_load.py tests/test_registry.py tests/test_checkpoint.py \
  tests/test_tools.py::test_tiny_segmentation_train_then_test_gives_python_numbers

.PHONY: install-numpy1 test-numpy1
install-numpy1: $(NP1_VENV)/.installed

$(NP1_VENV)/.installed: setup.py requirements/*.txt Makefile
	test -x $(NP1_VPY) || $(PYTHON) -m venv $(NP1_VENV)
	$(NP1_PIP) -q "setuptools<82" wheel ninja
	$(NP1_PIP) -q torch==2.13.0
	$(call install_mmcv,$(NP1_VPY),$(NP1_PIP))
	$(NP1_PIP) -q --no-build-isolation -e ".[all,tests]"
	$(NP1_VPY) -c "import mmrepvit, mmcv.ops, mmdet, mmseg, pycocotools, cv2, torch, numpy; \
	  assert torch.__version__.startswith('2.13.0'), torch.__version__; \
	  assert numpy.__version__ < '2', numpy.__version__; print('numpy', numpy.__version__, 'opencv', cv2.__version__)"
	touch $@

test-numpy1: install-numpy1
	$(NP1_VPY) -m pytest -q -n $(TEST_WORKERS) $(NP1_TESTS)
