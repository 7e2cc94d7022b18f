# The two commands of the README: `make demo` and `make test`. Each sets itself up on first use.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= out/demo-fleet

.PHONY: setup demo test lint format bench bench-serve fuzz fuzz-ingest serve-deploy superset superset-check \
        superset-check-ci clean help

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml setup.py logalyzer/core/_arrow_text.h logalyzer/core/_headers.c logalyzer/core/_md5lines.c logalyzer/store/_pgcopy.c
	@command -v $(PYTHON) >/dev/null || { echo "Error: $(PYTHON) not found (LOGalyzer needs Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU wheel that lies on this machine; a bare `torch` pulls gigabytes
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install LOGalyzer with its dev extras

demo: $(STAMP)  ## synthetic fleet -> ingest -> sessionize -> templates -> train -> detect on local Ray + embedded PostgreSQL -> summary
	$(VENV)/bin/logalyzer synth $(DEMO) --devices 8 --hours 4 --seed 7
	$(VENV)/bin/logalyzer run $(DEMO) --steps ingest,sessionize,templates,train,detect
	$(VENV)/bin/logalyzer db info
	@echo
	@echo "Next:"
	@echo "  .venv/bin/logalyzer serve                  # HTTP service: http://127.0.0.1:8000/docs (/v1/score, jam-software)"
	@echo "  LOGALYZER_DSN=postgresql://... make superset   # dashboards on :8088 (needs a PostgreSQL that stays up)"
	@echo "  .venv/bin/ray start --head && RAY_ADDRESS=auto .venv/bin/logalyzer run $(DEMO) --steps sessionize,train,detect"
	@echo "                                             # the same jobs on a Ray you can watch: http://127.0.0.1:8265"

test: $(STAMP)  ## the test suite (real PostgreSQL, real local Ray)
	$(PY) -m pytest -q

lint: $(STAMP)  ## ruff: lint and formatting check (configured in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)  ## ruff: fix what can be fixed, then format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)  ## ingest benchmark (>= 1 GB fleet, vs zcat|psql and a row-at-a-time baseline), then sessionize, then training/scoring
	$(PY) bench/ingest.py
	$(PY) bench/sessionize.py
	$(PY) bench/train.py

bench-serve: $(STAMP)  ## HTTP benchmark: pending, events, score through `logalyzer serve` vs plain uvicorn vs in-process
	$(PY) bench/serve.py

fuzz-ingest: $(STAMP)  ## 10^6 mutated log lines (hostile VAR values, broken headers) through the ingest: stored = distinct, 0 crashes
	$(PY) bench/fuzz_ingest.py

FUZZ_URL ?= http://127.0.0.1:8000
fuzz: $(STAMP)  ## schemathesis against a running `logalyzer serve` (FUZZ_URL; FUZZ_TOKEN = an admin secret)
	@test -n "$(FUZZ_TOKEN)" || { echo "Error: set FUZZ_TOKEN to an admin secret (logalyzer tokens create --admin)"; exit 1; }
	$(VENV)/bin/schemathesis run $(FUZZ_URL)/openapi.json -H "Authorization: Bearer $(FUZZ_TOKEN)" \
	  --checks all --max-examples 500

serve-deploy: $(STAMP)  ## serve deploy serve/config.yaml, this checkout as working_dir (RAY_DASHBOARD_ADDRESS, LOGALYZER_DSN)
	@test -n "$(LOGALYZER_DSN)" || { echo "Error: set LOGALYZER_DSN (a cluster needs a PostgreSQL every node reaches)"; exit 1; }
	mkdir -p out
	sed -e 's|local:///opt/logalyzer|local://$(CURDIR)|' \
	    -e 's|LOGALYZER_DSN: .*|LOGALYZER_DSN: "$(LOGALYZER_DSN)"|' serve/config.yaml > out/serve-config.yaml
	$(VENV)/bin/serve deploy out/serve-config.yaml

superset: $(STAMP)  ## Superset 6.1.0 in its own venv with the dashboards imported, against LOGALYZER_DSN
	superset/bootstrap.sh

superset-check: $(STAMP)  ## demo data -> Superset -> every chart's query checked, screenshots in docs/img
	superset/check.sh

# What CI runs (.ci/superset-check): the same check, screenshots kept out of docs/ (superset/README.md
# says why it is not trimmed); SUPERSET_CHECK_* in the environment still apply.
superset-check-ci: $(STAMP)  ## superset-check as CI runs it: screenshots in out/superset-check/img
	SUPERSET_CHECK_SHOTS=$${SUPERSET_CHECK_SHOTS:-out/superset-check/img} superset/check.sh

clean:  ## remove the virtualenv and demo output (not the embedded database)
	rm -rf $(VENV) out
