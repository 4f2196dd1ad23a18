# `make test` and `make bench` create .venv on first use and reinstall when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
# Optional extras too, e.g. `make test EXTRAS=dev,ray,postgres` (CI does).
EXTRAS ?= dev
BIN := $(VENV)/bin

.PHONY: install test test-fast lint format bench gradcheck explain clean repro params
# DVC runs the stage commands (`backprop ...`) through the shell: the venv comes first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)
# MLflow 3 posts usage telemetry from every process; nothing here goes to the network.
export MLFLOW_DISABLE_TELEMETRY := true

comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

# Run the pipeline on the embedded digits (or whatever params.yaml says) and show the test accuracy.
repro: install
	$(BIN)/dvc repro
	@$(BIN)/python -c 'import json; m = json.load(open("data/reports/metrics.json")); print("test accuracy %.4f  macro F1 %.4f  (data/reports/metrics.json)" % (m["test_accuracy"], m["test_macro_f1"]))'

# Compose conf/ into params.yaml, as `dvc exp run` does (after editing conf/).
params: install
	$(BIN)/backprop params

test: lint
	$(BIN)/python -m pytest

# Everything but the tests marked slow (fresh git copies, servers, subprocess pipelines).
test-fast: lint
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python benchmarks/bench_epoch.py

gradcheck: install
	$(BIN)/backprop gradcheck

explain: install
	$(BIN)/backprop explain

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build src/*.egg-info
