# make demo: install and run the main job on generated data (~5 min on 2 CPU cores)
# make test: install and run the checks (what CI runs)
PYTHON ?= python3

.PHONY: install install-dev demo test

# torch first: on a machine without it, pick your CUDA build at pytorch.org; this installs the default one.
install:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -q -r requirements.txt

install-dev: install
	$(PYTHON) -m pip install -q -r requirements-dev.txt

demo: install
	$(PYTHON) demo.py

test: install-dev
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q
