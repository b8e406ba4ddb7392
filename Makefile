# kling-pipeline's own Makefile. `make demo` and `make test` are the two commands
# of the README; the rest is for working on the project.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test lint check plan report clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## demo: install, then run the quickstart sweep against the bundled emulator (no API key needed)
demo: $(STAMP)
	$(BIN)/kling-pipeline plan recipes/quickstart.yaml
	$(BIN)/kling-pipeline run recipes/quickstart.yaml --emulator

## test: install, then run the whole test suite
test: $(STAMP)
	$(BIN)/python -m pytest -q

## lint: ruff and mypy (strict)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

check: lint test

## plan / report: the quickstart's plan and gallery
plan: $(STAMP)
	$(BIN)/kling-pipeline plan recipes/quickstart.yaml

report: $(STAMP)
	$(BIN)/kling-pipeline report recipes/quickstart.yaml

clean:
	rm -rf recipes/out build dist .pytest_cache .mypy_cache .ruff_cache
