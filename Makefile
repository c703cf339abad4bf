# Two commands on a fresh machine:  `make serve`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The PostgreSQL half of the suite; trust auth on 127.0.0.1, as the README says.
export CORRAL_TEST_DATABASE_URL ?= postgresql+psycopg://127.0.0.1:5432/test

.PHONY: install serve check test bench-smoke model clean

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

# Nine workers on two cores: the process tests spend much of their time waiting, four of them
# for minutes (certificates living out their lifetimes); with six the cores were idle 15% of the
# time, with eight or nine 3 to 5%. One test at a time per worker, longest first
# (tests/conftest.py), so that the workers end together. Bytecode is written beforehand, where
# PYTHONDONTWRITEBYTECODE would leave every process to compile it again: Corral's for the
# hundreds of processes the tests start (compileall), and pytest's rewritten test modules for the
# workers (one collection); the two run side by side, and either failing fails the target.
test: install  ## the whole suite, on SQLite and on PostgreSQL (the bench's smoke run aside)
	$(BIN)/python -m compileall -q src bench tests > /dev/null & \
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest --collect-only -q -m "not bench" > /dev/null; \
	status=$$?; wait $$! && [ $$status -eq 0 ]
	$(BIN)/python -m pytest -n 9 --maxschedchunk 1 -m "not bench"

# The benchmark harness end to end on a small fleet (tests/e2e/test_bench_smoke.py): `python -m
# bench smoke` with its own control planes, simulated agents and S3 server, about a minute and a
# half. A long profile's check, so not in `make test`; CI runs it after the suite.
bench-smoke: install  ## the bench's smoke run, checked
	$(BIN)/python -m compileall -q src bench > /dev/null
	$(BIN)/python -m pytest -m bench

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
