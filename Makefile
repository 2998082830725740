# The two commands a newcomer needs: `make demo` and `make test` (each sets everything up).
.PHONY: setup demo demo-quick test
VENV := .venv/bin

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/kdctl demo

demo-quick: setup
	$(VENV)/kdctl demo --quick

test:
	bash scripts/setup.sh --test-deps
	$(VENV)/python -m pytest
