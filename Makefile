# Two entry points, both from nothing but Python 3.10+:
#   make demo   set up .venv and run the whole course (dlc run all)
#   make test   set up .venv and run the test suite
# TORCH picks the torch build. torch==2.13.0 is a local CPU wheel on the course machines and a
# regular (CUDA-capable) build elsewhere; override it, e.g. make demo TORCH="torch==2.5.1".
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
# A second environment, for the tests that load torchvision's own models into ours. PyPI's torchvision
# needs its own torch: on the course machines torch 2.14.1 + torchvision 0.29.1 lie on local disk.
TV_VENV     ?= .venv-torchvision
TORCHVISION ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test test-notebooks test-resume notebooks test-torchvision bench clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/dlc run all

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

# Only the notebooks: each one executed top to bottom in a fresh kernel, quick mode (make test runs them too).
test-notebooks: $(VENV)/.installed
	$(BIN)/python -m pytest -q tests/test_notebooks.py

# Every resumable lab killed with SIGKILL three times and resumed, against a run never stopped (the default
# suite kills three of them); about 8 minutes on 2 cores.
test-resume: $(VENV)/.installed
	DLC_RESUME_ALL=1 $(BIN)/python -m pytest -q tests/test_resume.py

# Open the notebooks in JupyterLab (installed into .venv on first use). Set DLC_QUICK=1 for seconds-long runs.
notebooks: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[notebook]"
	$(BIN)/jupyter lab notebooks/

$(TV_VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(TV_VENV)
	$(TV_VENV)/bin/python -m pip install --quiet $(TORCHVISION)
	$(TV_VENV)/bin/python -m pip install --quiet -e ".[test]"
	touch $@

# Only the tests that need torchvision (everywhere else they are skipped); here torchvision must import,
# so a broken install fails instead of skipping them.
test-torchvision: $(TV_VENV)/.installed
	$(TV_VENV)/bin/python -c "import torchvision; print('torchvision', torchvision.__version__)"
	$(TV_VENV)/bin/python -m pytest -q -m torchvision

bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/trainer_overhead.py
	$(BIN)/python benchmarks/many_models.py
	$(BIN)/python benchmarks/cnn_throughput.py
	$(BIN)/python benchmarks/ddp_scaling.py
	$(BIN)/python benchmarks/checkpoint_cost.py
	$(BIN)/python benchmarks/ppo_vs_sb3.py
	$(BIN)/python benchmarks/ppo_walker_vs_sb3.py

clean:
	rm -rf $(VENV) $(TV_VENV) runs build src/*.egg-info
