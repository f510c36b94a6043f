# make test   build everything a fresh machine lacks, check the import contract, then run the tests
#             (PYTEST_WORKERS= runs them in one process; PYTEST_ARGS= passes pytest more arguments)
# make demo   run the main job: a local cluster, the examples deployed through it
# make bench  run the benchmarks
# Re-running is quick: each step is redone only when its inputs changed.

VENV   := .venv
PY     := $(VENV)/bin/python
# rhai-py/vendor/rhai: Rhai with rhai-py's patch (rhai-py/vendor/README.md).
RHAI_SOURCES := $(shell find rhai-py/src rhai-py/python rhai-py/vendor -name '*.rs' -o -name '*.py' -o -name '*.pyi') \
                rhai-py/Cargo.toml rhai-py/Cargo.lock rhai-py/pyproject.toml rhai-py/vendor/rhai.patch

.PHONY: install test demo bench clean

# The import contract first (pyproject.toml's [tool.importlinter]: docs/architecture.md), then every test.
# The tests mostly wait on real processes (Redis, services, guests booting), so they run in parallel workers,
# a test file to a worker (its module-wide cluster is started once): 819 s in one process, 429 s in two, here.
PYTEST_WORKERS ?= -n auto --maxprocesses 4 --dist loadfile

test: install
	$(VENV)/bin/lint-imports --no-logo --no-cache
	$(PY) -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/zeronode up --nodes 2 --once

# Every bench appends its aims to one file; the last step prints them all in one table (bench/aims.py).
bench: export ZERONODE_BENCH_AIMS = $(abspath $(VENV))/bench-aims.jsonl
bench: install
	@rm -f $(VENV)/bench-aims.jsonl
	$(PY) bench/rhai_eval.py
	$(PY) bench/verify.py
	$(PY) bench/rights.py
	$(PY) bench/pipeline.py
	$(PY) bench/supervisor.py
	$(PY) bench/runner.py
	$(PY) bench/coord.py
	$(PY) bench/membership.py
	$(PY) bench/ledger.py
	$(PY) bench/vm_boot.py
	$(PY) bench/aims.py $(VENV)/bench-aims.jsonl

install: $(VENV)/.installed

$(VENV)/.system-packages: scripts/install-system-packages
	@mkdir -p $(VENV)
	scripts/install-system-packages
	@touch $@

$(PY):
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'maturin>=1.9,<2'

# rhai-py: the Rust build, in release mode, installed editable into the venv.
$(VENV)/.rhai-py: $(RHAI_SOURCES) | $(PY)
	cd rhai-py && VIRTUAL_ENV=$(abspath $(VENV)) $(abspath $(VENV))/bin/maturin develop --release --quiet
	@touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.rhai-py $(VENV)/.system-packages
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

clean:
	rm -rf $(VENV) rhai-py/target rhai-py/python/rhai/*.so
