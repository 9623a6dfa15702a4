# Two entry points, both from nothing but Python 3.10+:
#   make demo   set up .venv and run the whole course (dlc run all)
#   make test   set up .venv and run the test suite
# TORCH picks the torch build. torch==2.13.0 is a local CPU wheel on the course machines and a
# regular (CUDA-capable) build elsewhere; override it, e.g. make demo TORCH="torch==2.5.1".
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/dlc run all

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/trainer_overhead.py

clean:
	rm -rf $(VENV) runs build src/*.egg-info
