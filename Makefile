# The two commands of the README:
#   make demo   runs the main job (a 60-s rollout through the Slow-Fast Memory, CPU only)
#   make test   runs the test suite
# Each creates the virtual environment .venv and installs the pinned versions first.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo bench lint clean

$(STAMP): requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check context_forcing_core training tests benchmarks
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m context_forcing_core.demo

bench: $(STAMP)
	$(PY) -m benchmarks.memory_scaling
	$(PY) -m benchmarks.toyworld_speed
	$(PY) -m benchmarks.train_step

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
