# ehrca — see README.md. `make run` and `make test` are the quick start.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: run init test test-postgres lint typecheck check demo bench lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

init: $(STAMP)
	$(BIN)/ehrca init --exist-ok

run: init
	$(BIN)/ehrca serve

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto

test-postgres: $(STAMP)
	EHRCA_TEST_DATABASE_URL=$(PG_URL) $(BIN)/python -m pytest -q -n auto

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# Runs the whole story against the service started by `make run` (another terminal).
demo: $(STAMP)
	@printf '%s\n' 'demo-reviewer-password' | $(BIN)/ehrca officer add demo-reviewer --role reviewer 2>/dev/null || true
	@printf '%s\n' 'demo-security-password' | $(BIN)/ehrca officer add demo-security --role security_officer 2>/dev/null || true
	bash scripts/demo.sh

bench: $(STAMP)
	$(BIN)/python bench/run.py

lock:
	rm -rf /tmp/ehrca-lock && $(PYTHON) -m venv /tmp/ehrca-lock
	/tmp/ehrca-lock/bin/pip install --quiet -e '.[dev]'
	{ echo "# Exact versions CI installs (pip install -c constraints.txt). Regenerate with: make lock"; \
	  /tmp/ehrca-lock/bin/pip freeze --exclude-editable | grep -v '^ehrca'; } > constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
