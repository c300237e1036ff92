# Two commands do all the set-up on a fresh machine:
#   make demo   illustrate a sample book on the embedded defaults
#   make test   run the whole test suite (make test-fast: without the process tests)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Most tests wait on Temporal and timers, not the CPU: more workers than cores pays.
# Each worker has its own dev server and databases (tests/support/fixtures.py).
TEST_WORKERS ?= 4
# loadgroup: a module's tests marked xdist_group share one worker (and its module fixture).
PYTEST := $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

.PHONY: demo test test-fast lint worker clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/storywink demo

worker: $(STAMP)
	$(BIN)/python worker.py

# mypy runs beside pytest; then the tests that measure rates against the clock
# (@pytest.mark.alone) run by themselves, with no other test loading the machine.
test: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	@$(BIN)/mypy . & types=$$!; \
	$(PYTEST) -m "not alone"; tests=$$?; \
	wait $$types; types=$$?; \
	$(BIN)/pytest -q -m alone; alone=$$?; \
	test $$tests -eq 0 -a $$types -eq 0 -a $$alone -eq 0

# Workflow logic, activities and the CLI without the process tests (@pytest.mark.process:
# worker replicas, kill -9, SIGTERM, server restarts, quota), on SQLite unless
# STORYWINK_TEST_DATABASES says otherwise: a loop for while you work.
test-fast: $(STAMP)
	STORYWINK_TEST_DATABASES=$${STORYWINK_TEST_DATABASES:-sqlite} $(PYTEST) -m "not process"

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
