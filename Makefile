# Developer shortcuts. .ci/run drives the same targets on a clean clone.
#
#   make venv    .venv with atoguard installed editable, plus the test tools and the native
#                kernels (native/, Rust: built from source when cargo is on PATH)
#   make jars    the Kafka broker jars from Maven Central (cached; see tools/kafka_broker.py)
#   make test    venv (says so while it installs), then the whole test suite: .venv/bin/pytest -q -rs
#                (starts its own broker, or uses ATOGUARD_TEST_BOOTSTRAP=host:port)
#   make demo    broker, topics, worker and simulated traffic, then the report
#   make bench   the benchmarks

# any Python 3.11 or newer: python3.11 if there is one, else python3
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv

.PHONY: venv jars test demo bench

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml native/pyproject.toml native/Cargo.toml native/Cargo.lock native/src/lib.rs
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "make venv: installing atoguard and its test tools into $(VENV) (pip install -e '.[test]': about a minute on a fresh machine)"
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[test]'
	if command -v cargo >/dev/null; then $(VENV)/bin/pip install -q --disable-pip-version-check ./native; else echo 'make venv: no cargo on PATH: no native kernels, the engine runs its Python code'; fi
	touch $@

jars: venv
	$(VENV)/bin/atoguard broker fetch

test: venv
	@echo "make test: running the whole suite (.venv/bin/pytest -q -rs: skipped tests say why at the end)"
	$(VENV)/bin/pytest -q -rs

demo: venv
	$(VENV)/bin/atoguard demo

bench: venv
	$(VENV)/bin/atoguard simulate --accounts 2000 --days 14 --seed 1 --out .cache/bench-events.jsonl --labels .cache/bench-labels.jsonl --quiet
	$(VENV)/bin/python -m bench.engine_bench .cache/bench-events.jsonl
	$(VENV)/bin/python -m bench.darpa_midas
