# The README's two commands: `make demo` and `make test`. Both create/update .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mtshare-installed
PYTEST_ARGS ?=

.PHONY: venv demo test lint bench clean

$(STAMP): requirements.txt requirements-python.txt setup.py package.xml scripts/system_deps.sh
	bash scripts/system_deps.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mtshare demo

test: $(STAMP)
	$(PY) -m pytest test $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check mtshare_ros test bench launch

bench: $(STAMP)
	$(PY) bench/node_latency.py

clean:
	rm -rf $(VENV) build install log *.egg-info
