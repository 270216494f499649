# Every target creates or reuses .venv and installs what it needs first,
# so each works from a fresh clone with nothing else done.
PYTHON ?= python3
# The hub's own interpreter: the distribution's CPython when it is 3.11 or newer
# (built with profile-guided and link-time optimisation, about 10 % faster on
# the runtime benchmark than a default source build), else $(PYTHON).
# `make VENV_PYTHON=...` picks another; an existing .venv is kept as it is.
VENV_PYTHON ?= $(or $(shell for p in /usr/bin/python3 $(PYTHON); do \
  $$p -c 'import ensurepip, sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
  && { echo $$p; break; }; done),$(PYTHON))
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test check lint typecheck bench clean tryton tryton-stop browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(VENV_PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/accord up

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# The console's tests drive Debian's Chromium headless through Playwright.
# Without root to install it, they are skipped with the reason (or fail when
# ACCORD_REQUIRE_SERVICES=1).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; \
	  else echo "chromium not installed and no root to install it: console browser tests will skip"; fi; }

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(STAMP)
	$(BIN)/python bench/bench_billing.py
	$(BIN)/python bench/bench_runtime.py
	$(BIN)/python bench/bench_runtime_phases.py
	$(BIN)/python bench/bench_governor.py --quick
	$(BIN)/python bench/bench_connector_calls.py
	$(BIN)/python bench/bench_reconcile.py
	$(BIN)/python bench/bench_api.py
	$(BIN)/python bench/bench_demo.py

tryton:
	$(PYTHON) scripts/tryton_server.py start

tryton-stop:
	$(PYTHON) scripts/tryton_server.py stop

clean:
	-$(PYTHON) scripts/tryton_server.py purge
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
