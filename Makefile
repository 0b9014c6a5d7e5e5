# The README's two commands. Each creates .venv if missing and installs before it runs.
#   make run   installs, then runs the flagship (SSVI) end to end on offline data
#   make test  installs, then runs ruff and the test suite

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RUN_OUT ?= runs/flagship

.PHONY: run test install readme clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, as the CPU build that is on disk here, then the package with its extras.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[data,dp,test]'
	touch $(STAMP)

install: $(STAMP)

# kl_weight=0.3: SSVI's beta chosen on mnist1d's validation split by `varbayes reproduce ssvi`
run: $(STAMP)
	$(BIN)/varbayes run ssvi --dataset mnist1d --set kl_weight=0.3 --out $(RUN_OUT)
	@echo "report: $(RUN_OUT)/report.md"

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

# Rewrite the README's table of methods from the registry (a test checks they agree).
readme: $(STAMP)
	$(BIN)/python -m varbayes.readme

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
