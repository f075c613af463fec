# The whole set-up of a fresh machine: `make train`, `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv test train bench reproduce lint

venv: $(VENV)/.installed

# Reinstalls only when the dependencies in setup.cfg change. PYTHONWARNINGS silences
# setuptools' editable-install warning, which names the package folder the repository has.
$(VENV)/.installed: setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install -q -e '.[test]'
	touch $@

# Two workers (pytest-xdist), each taking whole test files: the suite in about half the time
# on CI's 2 cores. `.venv/bin/python -m pytest` runs it in one process.
test: venv
	$(BIN)/python -m pytest -n 2 --dist loadfile

train: venv
	$(BIN)/python -m train.compare --config train/configs/moving_digits.py --workdir runs/moving_digits

# The benchmark (docs/performance.md), then the race to a fixed accuracy (docs/race.md).
bench: venv
	$(BIN)/python -m train.benchmark --docs docs/performance.md
	$(BIN)/python -m train.race

reproduce: venv
	$(BIN)/python -m train.reproduce

lint: venv
	$(BIN)/ruff check keras_sideways train tests
	$(BIN)/ruff format --check keras_sideways train tests
