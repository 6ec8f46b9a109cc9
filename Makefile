# SGCAD for QGIS. `make demo` and `make test` install everything they need (scripts/setup.sh).
PY := .venv/bin/python
SOURCES := engine sgcad_qgis scripts tests

.PHONY: setup test lint pytest demo demo-train package bench clean

setup:
	@bash scripts/setup.sh

lint: setup
	@$(PY) -m ruff check $(SOURCES)
	@$(PY) -m bandit -q -r engine sgcad_qgis scripts -ll -c pyproject.toml

pytest: setup
	@$(PY) scripts/build_plugin.py dev >/dev/null
	@$(PY) -m pytest $(PYTEST_ARGS)

test: lint pytest

demo:
	@bash scripts/demo.sh

demo-train: setup
	@bash scripts/demo_train.sh

package: setup
	@$(PY) scripts/build_plugin.py zip

bench: setup
	@$(PY) -m engine bench

clean:
	rm -rf build dist demo_output
