# medfed — two commands: `make demo` and `make test`. Everything else is set up by them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SRC := src/medfed

LOCK := requirements/lock.txt
# Where the CPU build of PyTorch is found (this machine kind keeps it on disk).
TORCH_WHEELS ?= /opt/wheels

.PHONY: images setup demo test test-containers test-kernels check lint typecheck format proto bench lock lock-check clean

# Dependencies come from the hashed lock (exact versions, every file checked); the project itself
# is installed on top without resolving anything again.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/medfed demo

test: setup
	$(PY) -m pytest -q -m "not containers"

# The deployment as shipped: both images built with podman from a debootstrap'd Debian base and the
# compose consortium run to a completed study (minutes cold; .ci/run installs podman and runs it).
test-containers: setup
	$(PY) -m pytest -q -m containers tests/deploy

# The tests that train, once per PyTorch CPU kernel set (the dispatch switch ATEN_CPU_CAPABILITY):
# a claim that holds only with one CPU vendor's kernels fails here, on any machine.
# Left out: e2e tests that train nothing (statistics) or compare two runs on the same kernels, and
# those that check records, not numbers (ledger, governance, protocol approval, dashboard, the
# certificate, claim, hostile-node and validation checks), and the Flower clients' same-kernel match.
KERNEL_TESTS := tests/training tests/simulation tests/e2e tests/bench tests/model tests/node/test_executor.py \
	tests/strategies/test_scaffold_convergence.py tests/cli/test_demo.py tests/cli/test_model_cli.py \
	--ignore=tests/e2e/test_stats.py --ignore=tests/e2e/test_ehr_study.py \
	--ignore=tests/e2e/test_ledger.py --ignore=tests/e2e/test_governance.py \
	--ignore=tests/e2e/test_protocol_approval.py --ignore=tests/e2e/test_dashboard.py \
	--ignore=tests/e2e/test_auth.py --ignore=tests/e2e/test_claims.py \
	--ignore=tests/e2e/test_hostile.py --ignore=tests/e2e/test_validation.py \
	--ignore=tests/e2e/test_heartbeat.py --ignore=tests/e2e/test_study_progress.py \
	--ignore=tests/e2e/test_flower_clients.py
test-kernels: setup
	for cap in default avx2; do \
		echo "== ATEN_CPU_CAPABILITY=$$cap"; \
		ATEN_CPU_CAPABILITY=$$cap $(PY) -m pytest -q -p no:cacheprovider $(KERNEL_TESTS) || exit 1; \
	done

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

# Refresh the lock after editing dependencies in pyproject.toml; lock-check is what CI runs.
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q uv==0.13.8
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --find-links $(TORCH_WHEELS) \
		--override requirements/overrides.txt --custom-compile-command "make lock" --output-file $(LOCK)

lock-check: setup
	$(PY) .ci/check_lock.py

# Container images with podman (README "Deploying"): coordinator, node and, for the compose
# consortium without a registry, PostgreSQL from Debian packages; the base is debootstrapped.
images:
	POSTGRES=1 deploy/build-images.sh

clean:
	rm -rf $(VENV) reports .mypy_cache .ruff_cache .pytest_cache
