# The two commands of the README. Each creates (or reuses) .venv and installs what it needs.
#   make run    - the quickstart study on local Ray, all cores, MLflow in SQLite
#   make test   - the whole test suite (CI runs exactly this)
#   make serve MODEL=dir [PORT=8000] [HOST=127.0.0.1] - a model on an OpenAI-compatible
#                 server on this CPU machine (vllm-cpu in its side venv; see README)
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
DEPS_HASH := $(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(DEPS_HASH)
STUDY ?= sweeps/quickstart.yaml

.PHONY: run test setup browser clean-results serve

run: $(STAMP)
	$(VENV)/bin/ablab run $(STUDY) $(ARGS)

# Two pytest-xdist workers (the suite mostly waits: Ray and MLflow start-ups, sleeping
# trials, ssh, pip); files that share a fixture stay on one worker and the longest tests
# start first (tests/conftest.py). TEST_WORKERS=0: one process, as before.
TEST_WORKERS ?= 2
test: $(STAMP) browser
	RAY_AUTH_MODE=disabled $(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

# The UI tests drive Debian's headless Chromium with selenium (Playwright's own browser
# download does not work here). Installed once, with apt (as root, or through sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing Debian's chromium and chromium-driver for the browser tests (apt-get)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; }

setup: $(STAMP)

PORT ?= 8000
HOST ?= 127.0.0.1
serve: $(STAMP)
	@test -n "$(MODEL)" || { echo "usage: make serve MODEL=<model directory> [PORT=8000] [HOST=127.0.0.1] [ARGS='-- --seed 0']" >&2; exit 2; }
	$(VENV)/bin/python benchmarks/vllm_cpu.py serve $(MODEL) --host $(HOST) --port $(PORT) $(ARGS)

# Installed by uv from pip's own package sources (ablab/install.py: under a minute where
# pip takes two), by pip where uv cannot be had.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "installing ablab and its dependencies into $(VENV) (first time: a minute or so)"
	@$(VENV)/bin/python -m ablab.install $(VENV)/bin/python -q -c constraints.txt -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

clean-results:
	rm -rf ablab_results
