# The two commands that matter on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench screenshots lab clean bytecode

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,web]'
	touch $(STAMP)

# An editable install compiles nothing, and PYTHONDONTWRITEBYTECODE (set on some machines) stops
# Python from caching what it compiles: every start would compile the app again (~100 ms).
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q checks widgets tui lab > /dev/null

demo: bytecode
	$(BIN)/talos-gpu demo $(if $(SCENARIO),--scenario $(SCENARIO))

lab: bytecode
	$(BIN)/talos-gpu lab $(if $(SCENARIO),--scenario $(SCENARIO))

test: bytecode
	$(BIN)/ruff check checks widgets tui lab tests bench
	$(BIN)/pytest -q

bench: bytecode
	$(BIN)/python bench/run_all.py

screenshots: $(STAMP)
	$(BIN)/python -m tui.screenshots screenshots

clean:
	rm -rf $(VENV) build *.egg-info
