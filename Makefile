# Each target bootstraps .venv itself, so a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint types unit bench record fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fibo-sms demo

lint: $(STAMP)
	$(BIN)/ruff check fibo_soap tests bench
	$(BIN)/ruff format --check fibo_soap tests bench

types: $(STAMP)
	$(BIN)/mypy fibo_soap

unit: $(STAMP)
	$(BIN)/pytest --cov=fibo_soap --cov-report=term -q

test: lint types unit

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

record: $(STAMP)
	$(BIN)/pytest --record-mode=rewrite -q tests/test_cassettes.py

clean:
	rm -rf $(VENV) .coverage .mypy_cache .ruff_cache
