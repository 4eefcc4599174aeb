# The README's two commands: `make demo` and `make test`. Each works in a fresh clone, on any day:
# both install through requirements/lock.txt (exact versions of every runtime, faces and dev
# dependency), so a library release after the last `make lock` changes nothing here.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO ?= demo-out
LOCK := requirements/lock.txt
STAMP := $(VENV)/.opreid-installed

.PHONY: demo test test-fast lint lock clean-demo

# One environment for both commands: the package (editable) with the face and dev extras, every
# version taken from the lock. The stamp depends on the lock, so a refreshed lock reinstalls.
$(STAMP): setup.cfg pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c $(LOCK) pip setuptools wheel
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[faces,dev]' pip-tools
	touch $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh $(DEMO)

test: $(STAMP)
	$(PY) -m pytest -q --durations=15 $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m 'not slow' $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Refresh the lock: resolve setup.cfg's lower bounds (+ the faces and dev extras) and the installers
# to today's newest versions under requirements/pins.in. Run it on purpose (to take new releases),
# then `make test`, and commit the lock with what the upgrade changed.
lock: $(STAMP)
	$(VENV)/bin/pip-compile --quiet --upgrade --extra faces --extra dev --strip-extras --allow-unsafe \
	    --no-emit-index-url --no-emit-find-links -c requirements/pins.in \
	    -o $(LOCK) setup.cfg requirements/tools.in

clean-demo:
	rm -rf $(DEMO)
