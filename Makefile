# cca-book: `make book` builds the executed book, `make test` runs lint + tests + notebooks.
# Both create .venv and install everything from requirements.txt on first use.

PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
PROFILE ?= quick
# Where the chapters that train many networks train them: empty (in each chapter's process),
# "processes" (a local pool) or a Dask scheduler address, e.g. tcp://10.0.0.5:8786.
SCHEDULER ?=
# Parallel pytest workers for `make test` (nbval notebooks are kept whole on one worker).
JOBS    ?= 2
STAMP   := $(VENV)/.installed

# One BLAS/torch thread per process when several run side by side: processes that each start
# as many BLAS threads as there are cores oversubscribe the CPU and slow each other down.
TEST_ENV := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

.PHONY: help install book plan chapter test unit check-book chromium lint bench clean clean-cache

help:
	@echo "make book      execute every chapter with the quick profile (or PROFILE=full / PROFILE=paper: params/<profile>/) and build _build/html"
	@echo "               SCHEDULER=processes or SCHEDULER=tcp://host:8786 trains the sweeps on a pool / a Dask cluster"
	@echo "make plan PROFILE=paper   train nothing: networks per chapter and their estimated cost on this machine"
	@echo "make test      ruff + pytest + nbval on every notebook, then build the book and check it"
	@echo "make unit      ruff + pytest + nbval only (no book build)"
	@echo "make check-book  build the book and check it in headless Chromium (screenshots in _build/)"
	@echo "make chapter NB=signal_noise [PROFILE=full]   execute one chapter into book/executed/"
	@echo "make bench     run the benchmarks in benchmarks/"
	@echo "make clean     remove build output;  make clean-cache  remove trained models/activations"

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

install: $(STAMP)

book: $(STAMP)
	$(PY) -m cca_lib.book --profile $(PROFILE) --jobs $(JOBS) $(if $(SCHEDULER),--scheduler $(SCHEDULER))
	$(VENV)/bin/jupyter-book build . --warningiserror --keep-going
	@echo "Book: file://$(CURDIR)/_build/html/index.html"

plan: $(STAMP)
	$(PY) -m cca_lib.book --profile $(PROFILE) --plan

chapter: $(STAMP)
	@test -n "$(NB)" || (echo "usage: make chapter NB=<notebook name> [PROFILE=quick|full]"; exit 2)
	$(PY) -m cca_lib.book --profile $(PROFILE) --only $(NB)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: unit check-book

unit: $(STAMP)
	$(VENV)/bin/ruff check .
	$(TEST_ENV) $(PY) -m pytest -n $(JOBS) --dist loadscope -m "not browser" tests notebooks \
		--nbval-lax --nbval-current-env -p no:cacheprovider

# Debian's chromium (the project's own setup installs it; Playwright never downloads a browser).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser check"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

check-book: book chromium
	$(PY) -m pytest -m browser tests/browser -p no:cacheprovider -q

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf _build book/executed .pytest_cache .ruff_cache

clean-cache:
	rm -rf data/cache
