# The two commands of the README, and the steps they stand on. Everything lives in .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Reinstalled when pyproject.toml or a C source changes (the editable install compiles the C).
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml stream_scorer/*/_*.c | cksum | cut -d' ' -f1)

.PHONY: demo test test-fast lint kafka tools clean

## demo: a local Kafka broker, the simulator, two workers, a merchant stage, the evaluator; a live
## view and the operations page (Ctrl-C stops all). DEMO_ARGS passes options, e.g. DEMO_ARGS="--duration 300".
demo: $(STAMP)
	$(BIN)/stream-scorer demo $(DEMO_ARGS)

## test: every test (unit, integration over a real broker, faults), from nothing
test: $(STAMP) kafka tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)

APT_TOOLS := env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-compose prometheus chromium >/dev/null

## tools: Debian's docker-compose and prometheus (promtool) for the compose checks, and chromium
## for the operations page's browser test, when apt can install them (root, or passwordless
## sudo); without them those tests skip and say so.
tools:
	@if command -v docker-compose >/dev/null && command -v promtool >/dev/null && command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  $(APT_TOOLS) || { apt-get update -q >/dev/null && $(APT_TOOLS); } || \
	  echo "note: could not install docker-compose/prometheus/chromium; their tests will skip"; \
	elif sudo -n true 2>/dev/null; then \
	  sudo -n $(APT_TOOLS) || { sudo -n apt-get update -q >/dev/null && sudo -n $(APT_TOOLS); } || \
	  echo "note: could not install docker-compose/prometheus/chromium; their tests will skip"; \
	else echo "note: docker-compose/promtool/chromium missing and apt not usable; their tests will skip"; fi

## test-fast: unit tests only
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check stream_scorer tests benchmarks
	$(BIN)/mypy stream_scorer

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
