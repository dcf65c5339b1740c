# The two commands of the README:
#   make demo   runs the main job: the toy long-video workflow in a real ComfyUI (CPU only), prints the video's path
#   make test   runs the test suite (including the real-ComfyUI tests)
# Each creates the virtual environment .venv and installs the pinned versions first; both provision ComfyUI 0.3.75
# once into COMFYUI_HOME (tools/provision_comfyui.sh). `make demo COMFYUI_DIR=... COMFYUI_PYTHON=...` uses an
# existing ComfyUI instead.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo bench lint clean comfyui gpu-check

$(STAMP): requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

COMFYUI_HOME ?= $(HOME)/.cache/context-forcing/comfyui-0.3.75

comfyui:
	bash tools/provision_comfyui.sh $(COMFYUI_HOME)

test: $(STAMP) comfyui
	$(PY) -m ruff check context_forcing_core training tests benchmarks nodes tools __init__.py
	COMFYUI_HOME=$(COMFYUI_HOME) $(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m tools.run_workflow workflows/toy_long_video.json --comfyui-home $(COMFYUI_HOME) \
		$(if $(COMFYUI_DIR),--comfyui $(COMFYUI_DIR)) $(if $(COMFYUI_PYTHON),--python $(COMFYUI_PYTHON))

bench: $(STAMP) comfyui
	$(PY) -m benchmarks.memory_path
	$(PY) -m benchmarks.memory_scaling
	$(PY) -m benchmarks.train_step
	$(PY) -m benchmarks.scene_step
	$(COMFYUI_HOME)/venv/bin/python -m benchmarks.stream_decode

# On a machine with a CUDA GPU: 60 s of 480x832 video from a random-weight Wan2.1-1.3B, memories x eager / compiled
gpu-check:
	bash benchmarks/gpu_check.sh

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
