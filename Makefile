# The README's two commands: `make demo` and `make test`. Each works in a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO ?= demo-out
STAMP := $(VENV)/.opreid-installed

.PHONY: demo test test-fast lint clean-demo

# One environment for both commands: the package (editable) with the face and dev extras.
# torch resolves to the locally cached 2.14.1 build through pip's constraint file on this machine.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[faces,dev]'
	touch $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh $(DEMO)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m 'not slow' $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean-demo:
	rm -rf $(DEMO)
