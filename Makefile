# protrep: the two commands of the README, for a machine with Python 3.11 and access to
# the package registries (PyPI).
#
#   make book    install if needed; run every notebook of _toc.yml (profile PROFILE) into
#                _build/notebooks; build the HTML of the executed notebooks in _build/html;
#                open every page in headless Chromium when it is installed (a broken image,
#                a JavaScript error or a request leaving file:// fails; screenshots in
#                _build/screenshots)
#                DATASET=<your screen> [LABELS=<table>] [STANDARDS=<folder>] runs it on your
#                own data instead of the simulated screen (protrep.userdata; see the README)
#   make test    install if needed; run the test suite
#   make lab     install if needed; open the notebooks in JupyterLab (book/, kernel python3)
#
# The install step (a .venv with the pinned requirements and protrep in editable mode)
# runs again only when requirements.txt, constraints.txt or pyproject.toml change.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.protrep-installed
PROFILE ?= default
# The book on your own screen: a protrep-cells folder or a source `protrep convert` reads, the
# localization table joined when it is converted, and a folder of functional standards.
DATASET ?=
LABELS ?=
STANDARDS ?=
BOOK_PARAMS := $(if $(DATASET),-p dataset $(DATASET)) $(if $(LABELS),-p labels $(LABELS)) \
	$(if $(STANDARDS),-p standards $(STANDARDS))
PYTEST_ARGS ?=
# Test processes (pytest-xdist; a whole file per process, so module fixtures are built once):
# many tests wait on a kernel, a subprocess or one Python thread, so 2 suit a 2-core machine.
TEST_WORKERS ?= 2
LAB_ARGS ?=

# Tests and notebooks read the real reference data through PROTREP_SHARED_DATA when
# ../shared/data sits beside the repository (as in CI); an absolute path, because the
# notebooks run with book/ as their working directory.
ifneq ($(wildcard ../shared/data/.),)
export PROTREP_SHARED_DATA ?= $(abspath ../shared/data)
endif

.PHONY: help install book test lab constraints clean

help:
	@echo "make book    run the notebooks (PROFILE=$(PROFILE)) and build _build/html"
	@echo "             on your screen: make book DATASET=DIR [LABELS=TABLE] [STANDARDS=FOLDER]"
	@echo "make test    run the test suite"
	@echo "make lab     open the notebooks in JupyterLab (book/, the project's python3 kernel)"
	@echo "make install create $(VENV) and install the pinned requirements (done by both)"
	@echo "make constraints  rewrite constraints.txt from $(VENV) after changing requirements.txt"
	@echo "make clean   remove _build"

$(PY):
	$(PYTHON) -m venv $(VENV)

# `ipykernel install` points the kernel `python3` (papermill's -k python3) at this
# venv's interpreter, whatever kernels the user has elsewhere.
$(STAMP): requirements.txt constraints.txt pyproject.toml | $(PY)
	$(PY) -m pip install -r requirements.txt -c constraints.txt -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (protrep)"
	touch $@

install: $(STAMP)

book: $(STAMP)
	$(PY) scripts/run_book.py run --profile $(PROFILE) $(BOOK_PARAMS) --out _build/notebooks
	$(PY) scripts/run_book.py html --executed _build/notebooks --staging _build/src --path-output .
	$(PY) scripts/check_browser.py _build/html --screenshots _build/screenshots --if-available

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The notebooks' relative paths (../data, ../_build/results) hold from book/, as in `make book`.
lab: $(STAMP)
	cd book && $(abspath $(VENV))/bin/jupyter lab --ServerApp.root_dir=. $(LAB_ARGS)

constraints: $(STAMP)
	{ sed -n '/^#/p' constraints.txt; \
	  $(PY) -m pip freeze --all --exclude-editable | grep -v '^pip==' \
	    | sed -E 's/^(torch==[^+]*)\+.*/\1/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	touch $(STAMP)

clean:
	rm -rf _build
