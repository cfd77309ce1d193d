# tracesim — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# System packages: libfuse2 for the mount (make run); the test suite also drives real tools.
RUN_DEBS  := libfuse2 fuse
TEST_DEBS := $(RUN_DEBS) clang llvm trace-cmd libtracefs-dev linux-perf

.PHONY: run test bench fuzz setup sysdeps-run sysdeps-test clean

run: setup sysdeps-run
	$(VENV)/bin/tracesim demo

test: setup sysdeps-test
	$(PY) -m pytest -q -n 2 --dist loadfile tests

bench: setup sysdeps-run
	$(VENV)/bin/tracesim bench all

fuzz: setup
	TRACESIM_FUZZ=long $(PY) -m pytest -q tests -m fuzz -p no:cacheprovider

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Installs missing Debian packages when we are root with apt (as in CI); elsewhere the features
# (and tests) that need them say which package is missing.
sysdeps-run:
	@sh tools/sysdeps.sh $(RUN_DEBS)

sysdeps-test:
	@sh tools/sysdeps.sh $(TEST_DEBS)

clean:
	rm -rf $(VENV) build *.egg-info
