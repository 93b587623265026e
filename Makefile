# mithridate: `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST_DIR := /usr/share/datasets/fashion-mnist

.PHONY: demo test venv fashion-mnist bench clean help

help:
	@echo "make demo   - create .venv, install, run 'mithridate demo' on bundled data"
	@echo "make test   - create .venv, install, run the test suite"
	@echo "make bench  - run benchmarks/backdoor_spectral.py (long)"

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# the CPU build of torch, pinned: an unpinned torch pulls a multi-GB CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Fashion-MNIST from Debian's package, when missing and we are root (tests skip without it).
fashion-mnist:
	@if [ ! -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ] && [ ! -f $(FMNIST_DIR)/train-images-idx3-ubyte ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing dataset-fashion-mnist"; \
	    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	      (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1) || \
	      echo "could not install dataset-fashion-mnist; Fashion-MNIST tests will be skipped"; \
	  else echo "Fashion-MNIST not found and not root: its tests will be skipped"; fi; \
	fi

demo: $(STAMP)
	$(VENV)/bin/mithridate demo --out mithridate-demo

# one OpenBLAS thread: on 2 cores OpenBLAS's threads and torch's fight each other (the suite took
# 49 s with it and 5-17 min without it on this project's 2-core machine)
test: $(STAMP) fashion-mnist
	OPENBLAS_NUM_THREADS=$${OPENBLAS_NUM_THREADS:-1} $(PY) -m pytest -q

bench: $(STAMP) fashion-mnist
	$(PY) benchmarks/backdoor_spectral.py

clean:
	rm -rf $(VENV) mithridate-demo .pytest_cache
