# `make demo` and `make test` install into .venv/ first (once; a complete .venv/ is left as it is).
PYTHON ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip install --disable-pip-version-check -c requirements/constraints.txt
STAMP := $(VENV)/.installed
MMCV_WHEEL_DIR ?= ../shared/wheels
MMCV_WHEEL := $(MMCV_WHEEL_DIR)/mmcv-2.1.0-cp311-cp311-linux_x86_64.whl

.PHONY: install demo test clean-venv

install: $(STAMP)

$(STAMP): setup.py requirements/*.txt Makefile
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -q "setuptools<82" wheel ninja
	$(PIP) -q torch==2.13.0
	@if $(VPY) -c "import mmcv, mmcv.ops" 2>/dev/null && \
	    [ "$$($(VPY) -c 'import mmcv; print(mmcv.__version__)')" = 2.1.0 ]; then \
	  echo "mmcv 2.1.0 with ops already installed"; \
	elif [ -f $(MMCV_WHEEL) ] && (cd $(MMCV_WHEEL_DIR) && sha256sum --quiet -c SHA256SUMS); then \
	  echo "installing mmcv from $(MMCV_WHEEL) (SHA-256 verified)"; \
	  $(PIP) -q $(MMCV_WHEEL); \
	else \
	  echo "building mmcv 2.1.0 with its ops from source (about 12 minutes on 2 cores)"; \
	  MMCV_WITH_OPS=1 MAX_JOBS=$$(nproc) $(PIP) --no-build-isolation mmcv==2.1.0; \
	fi
	$(PIP) -q -r requirements/runtime.txt -r requirements/optional.txt -r requirements/tests.txt
	$(PIP) -q --no-build-isolation --no-deps -e .
	$(VPY) -c "import mmrepvit, mmcv.ops, mmdet, mmseg, pycocotools"
	touch $(STAMP)

demo: install
	$(VPY) tools/demo.py

test: install
	$(VPY) -m pytest -q tests

clean-venv:
	rm -rf $(VENV)
