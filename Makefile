# Two commands: `make run` (quickstart experiment + report) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= results/quickstart
JOBS ?= 2

.PHONY: install run test bench lint clean

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
	$(PY) -m pytest -n $(JOBS) --benchmark-disable --durations=15 tests

bench: $(STAMP)
	$(PY) -m pytest tests/benchmarks --benchmark-only --benchmark-autosave \
		--benchmark-columns=min,median,mean,rounds -p no:xdist

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) results .pytest_cache .benchmarks
