# tracesim — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SETUP_LOG := $(VENV)/setup.log
# Environment rather than flags: the pip a venv starts with may predate --root-user-action.
PIP    := PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 $(PY) -m pip -q

# System packages: libfuse2 for the mount (make run); the test suite also drives real tools.
RUN_DEBS  := libfuse2 fuse
# linux-source-6.12 carries the kernel's ftrace selftests, which the suite runs against the mount.
TEST_DEBS := $(RUN_DEBS) clang llvm trace-cmd libtracefs-dev linux-perf libbpf-dev bpftool \
             linux-source-6.12

.PHONY: run test typecheck bench fuzz setup sysdeps-run sysdeps-test clean

run: setup sysdeps-run
	@$(VENV)/bin/tracesim demo

# Lint first (cheap, and a red lint is a red test); the suite runs in a random order each time
# (pytest-randomly; the seed is printed at the end, rerun with --randomly-seed=N).
test: setup sysdeps-test
	$(VENV)/bin/ruff check .
	@$(MAKE) --no-print-directory typecheck
	$(PY) -m pytest -q -n 2 tests

# mypy resolves modules by path, and the rooms install as tracesim.<room>: a folder of symlinks
# gives it that layout without touching the tree.
TYPECHECK_ROOT := $(VENV)/typecheck
typecheck: setup
	@rm -rf $(TYPECHECK_ROOT) && mkdir -p $(TYPECHECK_ROOT)/tracesim
	@cp tracesim/__init__.py $(TYPECHECK_ROOT)/tracesim/
	@for room in bench filters kernel_model tools tracefs; do ln -s "$$PWD/$$room" $(TYPECHECK_ROOT)/tracesim/$$room; done
	MYPYPATH=$(TYPECHECK_ROOT) $(PY) -m mypy -p tracesim.filters.bpf -p tracesim.kernel_model

bench: setup sysdeps-run
	$(VENV)/bin/tracesim bench all

fuzz: setup
	TRACESIM_FUZZ=long $(PY) -m pytest -q tests -m fuzz -p no:cacheprovider

setup: $(STAMP)

# Quiet: pip's output goes to $(SETUP_LOG) and is shown only when the install fails.
$(STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -m venv $(VENV)
	@{ $(PIP) install --upgrade pip && $(PIP) install -e '.[test]'; } >$(SETUP_LOG) 2>&1 \
		|| { cat $(SETUP_LOG); echo "make setup: pip failed (log: $(SETUP_LOG))" >&2; exit 1; }
	@touch $@

# Installs missing Debian packages when we are root with apt (as in CI); elsewhere the features
# (and tests) that need them say which package is missing.
sysdeps-run:
	@sh tools/sysdeps.sh $(RUN_DEBS)

sysdeps-test:
	@sh tools/sysdeps.sh $(TEST_DEBS)
	@sh tools/selftests.sh

clean:
	rm -rf $(VENV) build *.egg-info
