# kling-pipeline's own Makefile. `make demo` and `make test` are the two commands
# of the README; the rest is for working on the project.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test lint check plan images report status clean

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

## lint: ruff, mypy (strict) and the layer contract (import-linter, see pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

check: lint test

## plan / images / report / status: the quickstart sweep (RUN_FLAGS="" to use the real API)
RECIPE    ?= recipes/quickstart.yaml
RUN_FLAGS ?= --emulator

plan: $(STAMP)
	$(BIN)/kling-pipeline plan $(RECIPE)

images: $(STAMP)
	$(BIN)/kling-pipeline run $(RECIPE) $(RUN_FLAGS)

report: images
	$(BIN)/kling-pipeline report $(RECIPE)

status: $(STAMP)
	$(BIN)/kling-pipeline status $(RECIPE)

clean:
	rm -rf recipes/out build dist .pytest_cache .mypy_cache .ruff_cache
