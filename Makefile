# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned first so that pip takes the local CPU build instead of pulling CUDA wheels.
TORCH_PIN := torch==2.13.0
OUT ?= runs/demo

.PHONY: install demo test bench clean

$(BIN)/kexue: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e ".[dev]"
	touch $(BIN)/kexue

install: $(BIN)/kexue

demo: install
	$(BIN)/kexue reproduce all --quick --out $(OUT)

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest src/kexue tests

bench: install
	$(BIN)/pip install -q -e ".[dev,bench]"
	$(BIN)/kexue bench all

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
