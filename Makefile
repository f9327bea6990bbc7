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
	$(BIN)/ruff check fibo_soap tests bench fuzz
	$(BIN)/ruff format --check fibo_soap tests bench fuzz

types: $(STAMP)
	$(BIN)/mypy fibo_soap

unit: $(STAMP)
	$(BIN)/pytest --cov=fibo_soap --cov-report=term -q

test: lint types unit

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

# Coverage-guided fuzzing (atheris) of the response decoder, the SOAP answer path (zeep included)
# and the emulator's request parser: FUZZ_TIME seconds per target. Not part of `make test`; what
# it finds lands in tests/fuzz_regressions/, which `make test` replays.
FUZZ_TIME ?= 60
fuzz: $(STAMP)
	$(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/pip install --quiet -e '.[dev,fuzz]'
	$(BIN)/python fuzz/run.py --time $(FUZZ_TIME)

record: $(STAMP)
	$(BIN)/pytest --record-mode=rewrite -q tests/test_cassettes.py

clean:
	rm -rf $(VENV) .coverage .mypy_cache .ruff_cache
