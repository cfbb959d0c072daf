# toollat: `make train` and `make test` work from a fresh clone.
# The venv is rebuilt when pyproject.toml changes. torch is installed first with its exact
# pin: any other torch spec makes pip fetch gigabytes of CUDA wheels.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: train test default-model venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

train: $(STAMP)
	$(PY) train.py +exp=grep_shell

# The layer contract first (pyproject [tool.importlinter], docs/ARCHITECTURE.md "Layers"), then the tests.
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

# toollat/bundles/default/ (shipped in the package): the whole shared corpus, all tools, held-out and leave-one-source-out
# metrics in its card, refit on every call for export; replaces the shipped bundle on purpose.
default-model: $(STAMP)
	$(PY) train.py +exp=default_model overwrite=true

clean:
	rm -rf $(VENV) .pytest_cache
