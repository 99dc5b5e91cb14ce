# The two commands that matter on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench screenshots lab clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/talos-gpu demo $(if $(SCENARIO),--scenario $(SCENARIO))

lab: $(STAMP)
	$(BIN)/talos-gpu lab $(if $(SCENARIO),--scenario $(SCENARIO))

test: $(STAMP)
	$(BIN)/ruff check checks widgets tui lab tests bench
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

screenshots: $(STAMP)
	$(BIN)/python -m tui.screenshots screenshots

clean:
	rm -rf $(VENV) build *.egg-info
