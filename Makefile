# kube-workflow — the two set-up commands are `make run` and `make test`; both work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run cluster test lint unit integration testenv helm venv clean bench

$(STAMP): pyproject.toml setup.cfg
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 is needed" or 0)'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

venv: $(STAMP)

# Build kube-apiserver and etcd (and helm, for the chart tests) from Go modules; cached outside the
# repo, keyed by go.sum, so only the first build takes minutes.
testenv:
	@bash hack/kube-testenv/build.sh >/dev/null

helm:
	@bash hack/helm/build.sh >/dev/null

# The controller with the original README's example: on the local control plane unless KUBECONFIG is
# set. Runs in the foreground until Ctrl-C.
run: venv testenv
	PYTHONPATH=hack $(PY) hack/run_local.py

# Only the local control plane, in the foreground (prints its KUBECONFIG path; Ctrl-C stops it).
cluster: venv testenv
	PYTHONPATH=hack $(PY) -m kubetestenv up --kubeconfig-out .kube-testenv/kubeconfig

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: venv
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

integration: venv testenv helm
	$(VENV)/bin/pytest -m integration $(PYTEST_ARGS)

# Everything: gates, then all tests against the real control plane.
test: venv testenv helm lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Benchmarks against the local control plane (a small default, under 3 minutes; figures printed and
# written to bench/results/). Larger runs: $(PY) -m bench --help.
bench: venv testenv
	$(PY) -m bench $(BENCH_ARGS)

# The reliability drills (tests/reliability: SIGKILLs, API-server restarts, callback outages, bad input);
# about 4 minutes on two cores. Each drill prints a summary line (kept at the end of the output).
.PHONY: test-reliability
test-reliability: venv testenv
	$(VENV)/bin/pytest -m reliability tests/reliability $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .kube-testenv *.egg-info
