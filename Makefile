# The two commands of the README, and the steps they stand on. Everything lives in .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test test-fast lint kafka clean

## demo: a local Kafka broker, the simulator, a worker and a live view (Ctrl-C stops all)
demo: $(STAMP)
	$(BIN)/stream-scorer demo

## test: every test (unit, integration over a real broker, faults), from nothing
test: $(STAMP) kafka
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## test-fast: unit tests only
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check stream_scorer tests benchmarks

## kafka: fetch Apache Kafka's broker jars with Maven into .cache/kafka (once)
kafka: $(STAMP)
	$(BIN)/stream-scorer kafka fetch

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

clean:
	rm -rf $(VENV) .cache .pytest_cache
