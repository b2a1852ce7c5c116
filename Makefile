# Two commands: `make run` (quickstart experiment + report) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= results/quickstart
JOBS ?= 2

# Tests that compare results across programs, batches or the Gymnasium shell:
# CI runs them a second time with XLA limited to an older instruction set, since
# XLA rounds float32 differently with and without AVX-512 (make test-isa).
PORTABILITY_TESTS = tests/bandits/test_simulation.py tests/agents/test_contracts.py \
	tests/agents/test_linucb_parity.py tests/agents/test_linear.py \
	tests/agents/test_ridge_accuracy.py tests/experiments/test_sweep.py \
	tests/experiments/test_evaluation.py tests/experiments/test_resume.py \
	tests/envs/test_gym.py tests/bandits/test_slates.py tests/agents/test_ranking.py \
	tests/experiments/test_slate_platform.py
ISA ?= AVX2

.PHONY: install run test test-isa bench bench-smoke lint clean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev,distributed,datasets]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/bandits run experiments/configs/quickstart.toml --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) --durations=15 --ignore=tests/benchmarks tests

test-isa: $(STAMP)
	XLA_FLAGS=--xla_cpu_max_isa=$(ISA) $(PY) -m pytest -n $(JOBS) $(PORTABILITY_TESTS)

# The benchmarks once each at smoke size, without timing (CI runs this).
bench-smoke: $(STAMP)
	$(PY) -m pytest -n $(JOBS) --benchmark-disable tests/benchmarks

bench: $(STAMP)
	$(PY) -m pytest tests/benchmarks --benchmark-only --benchmark-autosave \
		--benchmark-columns=min,median,mean,rounds -p no:xdist

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) results .pytest_cache .benchmarks
