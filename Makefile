# Two commands on a fresh machine:  `make serve`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The PostgreSQL half of the suite; trust auth on 127.0.0.1, as the README says.
export CORRAL_TEST_DATABASE_URL ?= postgresql+psycopg://127.0.0.1:5432/test

.PHONY: install serve check test model clean

$(BIN)/corral: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/corral

serve: install  ## run the control plane on the embedded default (SQLite in ./corral-data)
	$(BIN)/corral serve

check: install  ## lint (ruff) and strict types (mypy) over src, tests and bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

# Six workers on two cores: the process tests spend much of their time waiting (with four, the
# cores were busy 84% of the time; with six, the suite ends a fifth sooner). One test at a time
# per worker, longest first (tests/conftest.py), so that the workers end together.
test: install  ## the whole suite, on SQLite and on PostgreSQL
	$(BIN)/python -m compileall -q src bench > /dev/null  # hundreds of processes start from it
	$(BIN)/python -m pytest -n 6 --maxschedchunk 1

# The model of the API's promises (tests/model, docs/model.md) in its long profile: up to 1,000
# generated sequences in-process and 150 through a real process, on each database, beside the
# status-word and concurrency runs. MODEL_MINUTES ends each run after the batch that passes it
# (0: none; the whole profile takes some two hours on 2 cores); model-progress.log gets a line
# after each batch of 25.
MODEL_MINUTES ?= 0
model: install  ## the long profile of the reference model
	CORRAL_MODEL_PROFILE=long CORRAL_MODEL_MINUTES=$(MODEL_MINUTES) \
	CORRAL_MODEL_REPORT=$(CURDIR)/model-progress.log \
	$(BIN)/python -m pytest -n 4 --maxschedchunk 1 -rP tests/model

clean:
	rm -rf $(VENV) corral-data .pytest_cache
