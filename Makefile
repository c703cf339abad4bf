# Two commands on a fresh machine:  `make serve`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The PostgreSQL half of the suite; trust auth on 127.0.0.1, as the README says.
export CORRAL_TEST_DATABASE_URL ?= postgresql+psycopg://127.0.0.1:5432/test

.PHONY: install serve test model clean

$(BIN)/corral: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/corral

serve: install  ## run the control plane on the embedded default (SQLite in ./corral-data)
	$(BIN)/corral serve

# Four workers on two cores: the process tests spend much of their time waiting. One test at a
# time per worker, longest first (tests/conftest.py), so that the workers end together.
test: install  ## the whole suite, on SQLite and on PostgreSQL
	$(BIN)/python -m compileall -q src bench > /dev/null  # hundreds of processes start from it
	$(BIN)/python -m pytest -n 4 --maxschedchunk 1

# The model of the API's promises (tests/model, docs/model.md) in its long profile: hundreds of
# generated sequences on both databases, in-process and through real processes, then the
# status-word and concurrency runs. About an hour on 2 cores.
model: install  ## the long profile of the reference model
	CORRAL_MODEL_PROFILE=long $(BIN)/python -m pytest -n 4 --maxschedchunk 1 -rP tests/model

clean:
	rm -rf $(VENV) corral-data .pytest_cache
