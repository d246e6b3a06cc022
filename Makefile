# Two commands set everything up on a fresh machine: `make search` and `make test`.
# Both create .venv with pip on first use (and again whenever pyproject.toml changes).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA ?= $(MAMMO_RAY_DATA)
OUT ?= runs
WORKERS ?= 2
PYTEST_ARGS ?=

.PHONY: venv search preprocess test lint bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

search: venv
	@if [ -z "$(DATA)" ]; then \
	  echo "error: no MIAS data given: run 'make search DATA=path/to/all-mias.tar.gz' (or set MAMMO_RAY_DATA); get MIAS with '$(PY) -m mammo_ray.data fetch'" >&2; \
	  exit 2; \
	fi
	@echo "make search: the Ray Tune search is not built yet; running the preprocessing stage end to end."
	$(PY) -m mammo_ray.preprocess run --data "$(DATA)" --out "$(OUT)/cache" --workers $(WORKERS)

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

bench: venv
	@if [ -z "$(DATA)" ]; then echo "error: set DATA=path/to/mias archive" >&2; exit 2; fi
	$(PY) benchmarks/preprocess_bench.py --data "$(DATA)"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
