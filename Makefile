# make demo   - create .venv with the runtime only, run the packaged demo
# make test   - create .venv with every extra (torch CPU, LiteRT, pytest), run all tests
# make test-aarch64 - (root, x86_64 host) the runtime tests in an arm64 Debian under qemu,
#                     once as a Cortex-A72 (no dotprod) and once as a Cortex-A76 (dotprod)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: demo test test-python test-android test-aarch64 clean clean-aarch64

$(VENV)/.runtime: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $@

# torch==2.13.0 first and pinned: here it is a CPU build from local disk, while
# an unpinned torch from the index is a multi-GB CUDA build.
$(VENV)/.dev: $(VENV)/.runtime pyproject.toml
	$(PIP) torch==2.13.0
	$(PIP) -e '.[train,tflite,test]'
	touch $@

demo: $(VENV)/.runtime
	$(VENV)/bin/seprt demo

test: test-python test-android

test-python: $(VENV)/.dev
	$(PY) -m pytest -q

# the Java core's golden tests regenerate small models with the runtime in .venv
test-android: $(VENV)/.runtime
	SEPRT_PYTHON=$(PY) bash android_demo/build.sh test

# builds .cache/aarch64 (arm64 root + venv) once; see tools/aarch64/run.sh, docs/raspberry-pi.md
test-aarch64:
	bash tools/aarch64/run.sh

clean-aarch64:
	rm -rf .cache/aarch64

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis
