# diamond-price: every target builds what it needs on first use.
#   make serve   run the API on http://127.0.0.1:8000 (docs at /docs and /redoc)
#   make test    lint, type-check and run the whole test suite
#   make train   fit a candidate on diamond.db and promote it if its MAE is lower
#   make import FILE=sales.csv   add a CSV file's rows to diamond.db (docs/import.md)
#   make bench   load-test a real server process and print the figures

PYTHON ?= python3
VENV := .venv
SERVE_VENV := .venv-serve
PY := $(VENV)/bin/python
SERVE_PY := $(SERVE_VENV)/bin/python
DOCS := static/node_modules/.package-lock.json
NODE_EXAMPLE := examples/node/node_modules/.package-lock.json
WEB := examples/web/node_modules/.package-lock.json
ORT116_VENV := .venv-ort116
COMPILE := $(PY) -m uv pip compile --quiet --python-version 3.11 --generate-hashes \
	--custom-compile-command "make requirements" pyproject.toml

.PHONY: serve test test-fast train import evaluate bench bench-peers profile lint typecheck requirements db docs web clean

serve: $(SERVE_VENV)/.installed $(DOCS) $(WEB)
	$(SERVE_PY) -m inference

train: $(VENV)/.installed
	$(PY) -m training

# Add the rows of a CSV file to diamond.db (or DIAMOND_DB=...), then `make train` fits on them.
ifneq ($(filter import,$(MAKECMDGOALS)),)
ifeq ($(FILE),)
$(error usage: make import FILE=sales.csv [DIAMOND_DB=path/to/diamond.db])
endif
endif
import: $(VENV)/.installed
	$(PY) -m training import "$(FILE)"

evaluate: $(VENV)/.installed
	$(PY) -m training.evaluate

test: $(VENV)/.installed $(DOCS) $(NODE_EXAMPLE) $(WEB) $(ORT116_VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest

# The in-process tests only (no real server, browser, container or CLI process): the quick loop.
# Bytecode is cached even where the environment says not to: it saves about 8 s a run (51 s here).
test-fast: $(VENV)/.installed $(DOCS) $(NODE_EXAMPLE) $(WEB)
	PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -m "not slow" -q

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(VENV)/.installed
	$(PY) -m mypy

bench: $(VENV)/.installed $(DOCS)
	$(PY) bench/run.py

# Side by side with MLServer, KServe and BentoML, each installed (pinned) into .bench/ on first use.
bench-peers: $(VENV)/.installed
	$(PY) bench/peers.py

# Where a request's time goes, in process: each middleware's cost; --cprofile for the breakdown.
profile: $(VENV)/.installed
	$(PY) bench/inprocess.py

# Pinned install lists, generated from pyproject.toml.
requirements: $(VENV)/.installed
	$(COMPILE) --extra serve -o requirements/serve.txt
	$(COMPILE) --extra train -o requirements/train.txt
	$(COMPILE) --extra serve --extra train --extra dev -o requirements/dev.txt
	$(PY) -m uv pip compile --quiet --python-version 3.11 --no-deps --generate-hashes \
		--custom-compile-command "make requirements" requirements/kserve-types.in -o requirements/kserve-types.txt
	$(PY) -m uv pip compile --quiet --python-version 3.11 --generate-hashes \
		--custom-compile-command "make requirements" requirements/ort-1.16.in -o requirements/ort-1.16.txt

# Rebuild diamond.db from the public data set (downloads the plotnine wheel, installs nothing).
db:
	$(PYTHON) scripts/build_db.py

# Swagger UI and ReDoc, installed from the npm registry as pinned by static/package-lock.json.
docs: $(DOCS)
$(DOCS): static/package.json static/package-lock.json
	npm ci --prefix static --no-audit --no-fund --ignore-scripts
	touch $@

# onnxruntime-node for the embedding tests and example; its install script would download
# from outside the registry, and the CPU binaries ship inside the package anyway.
$(NODE_EXAMPLE): examples/node/package.json examples/node/package-lock.json
	npm ci --prefix examples/node --ignore-scripts --no-audit --no-fund
	touch $@

# The calculator page's onnxruntime-web (served at /calculator), pinned by its lock file.
web: $(WEB)
$(WEB): examples/web/package.json examples/web/package-lock.json
	npm ci --prefix examples/web --ignore-scripts --no-audit --no-fund
	touch $@

# The oldest onnxruntime the models support, in a virtual environment of its own, for
# tests/training/test_portability.py.
$(ORT116_VENV)/.installed: requirements/ort-1.16.txt
	test -x $(ORT116_VENV)/bin/python || $(PYTHON) -m venv $(ORT116_VENV)
	$(ORT116_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements/ort-1.16.txt
	touch $@

$(VENV)/.installed: requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements/dev.txt
	touch $@

$(SERVE_VENV)/.installed: requirements/serve.txt
	test -x $(SERVE_PY) || $(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_PY) -m pip install --quiet --upgrade pip
	$(SERVE_PY) -m pip install --quiet --require-hashes -r requirements/serve.txt
	touch $@

clean:
	rm -rf $(VENV) $(SERVE_VENV) $(ORT116_VENV) static/node_modules examples/node/node_modules examples/web/node_modules .pytest_cache .mypy_cache .ruff_cache
