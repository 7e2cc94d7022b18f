# The two commands of the README: `make demo` and `make test`. Each sets itself up on first use.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= out/demo-fleet

.PHONY: setup demo test bench superset superset-check clean help

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Error: $(PYTHON) not found (LOGalyzer needs Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU wheel that lies on this machine; a bare `torch` pulls gigabytes
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install LOGalyzer with its dev extras

demo: $(STAMP)  ## synthetic fleet -> ingest -> sessionize on local Ray + embedded PostgreSQL -> fleet summary
	$(VENV)/bin/logalyzer synth $(DEMO) --devices 8 --hours 4 --seed 7
	$(VENV)/bin/logalyzer run $(DEMO) --steps ingest,sessionize
	$(VENV)/bin/logalyzer db info

test: $(STAMP)  ## the test suite (real PostgreSQL, real local Ray)
	$(PY) -m pytest -q

bench: $(STAMP)  ## ingest benchmark (>= 1 GB fleet, vs zcat|psql and a row-at-a-time baseline), then sessionize
	$(PY) bench/ingest.py
	$(PY) bench/sessionize.py

superset: $(STAMP)  ## Superset 6.1.0 in its own venv with the dashboards imported, against LOGALYZER_DSN
	superset/bootstrap.sh

superset-check: $(STAMP)  ## demo data -> Superset -> every chart's query checked, screenshots in docs/img (not in CI)
	superset/check.sh

clean:  ## remove the virtualenv and demo output (not the embedded database)
	rm -rf $(VENV) out
