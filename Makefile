# medfed — two commands: `make demo` and `make test`. Everything else is set up by them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SRC := src/medfed

.PHONY: setup demo test check lint typecheck format proto bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/medfed demo

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/ruff check src tests bench

typecheck: setup
	$(VENV)/bin/mypy

check: lint typecheck test

format: setup
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

# Regenerate the medfed.v1 wire code after editing medfed.proto.
proto: setup
	PATH=$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -Isrc --python_out=src --mypy_out=src \
		--grpc_python_out=src --mypy_grpc_out=src \
		$(SRC)/protocol/v1/medfed.proto

bench: setup
	$(PY) bench/round_overhead.py

clean:
	rm -rf $(VENV) reports .mypy_cache .ruff_cache .pytest_cache
