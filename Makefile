# Two commands set everything up on a fresh machine: `make search` and `make test`.
# Both create .venv with pip on first use (and again whenever pyproject.toml changes).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA ?= $(MAMMO_RAY_DATA)
NAME ?= search
SPACE ?= search_spaces/default.yaml
PRETRAINED ?= imagenet
SEARCH_ARGS ?=
PYTEST_ARGS ?=

.PHONY: venv search test test-fast lint bench clean

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
	$(PY) -m mammo_ray.search --data "$(DATA)" --space "$(SPACE)" --name "$(NAME)" \
	  --set model.pretrained=$(PRETRAINED) $(SEARCH_ARGS)

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

# Unit tests only (no Ray cluster, no MIAS subset, no training runs): the edit-test loop.
test-fast: venv
	$(PY) -m pytest -m "not slow" -q $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

bench: venv
	@if [ -z "$(DATA)" ]; then echo "error: set DATA=path/to/mias archive" >&2; exit 2; fi
	$(PY) benchmarks/preprocess_bench.py --data "$(DATA)"
	$(PY) benchmarks/train_bench.py
	$(PY) benchmarks/search_bench.py --data "$(DATA)"
	$(PY) benchmarks/cv_bench.py --data "$(DATA)"
	$(PY) benchmarks/score_map_bench.py
	$(PY) -m mammo_ray.search --data "$(DATA)" --space "$(SPACE)" --set model.pretrained=none --plan

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
