# Every target creates .venv on first use, so each works on a fresh machine on its own.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: serve test conformance bench bench-gateway bench-tls bench-codec bench-scale bunny pubsub-rpc ticker lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/amqpws-broker serve $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The crash test (tests/store/test_crash.py) with 50 random kill points instead of
# `make test`'s 5; CRASH_SEED=N replays from seed N.
CRASH_ITERATIONS ?= 50
.PHONY: test-slow

test-slow: $(STAMP)
	CRASH_ITERATIONS=$(CRASH_ITERATIONS) $(PY) -m pytest -q tests/store/test_crash.py $(PYTEST_ARGS)

# Third-party clients against a broker on free ports (conformance/): rhea and
# rhea-promise from npm (pinned by conformance/package-lock.json),
# python-qpid-proton from the test extra, and the browser case's own setup
# (Debian's chromium, its npm packages).  In CI (CI=true) a client that is
# missing fails the run.
NODE_STAMP := conformance/node_modules/.installed

$(NODE_STAMP): conformance/package.json conformance/package-lock.json
	cd conformance && npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

conformance: $(STAMP) $(NODE_STAMP)
	if [ -f conformance/browser/setup.sh ]; then bash conformance/browser/setup.sh; fi
	$(PY) -m pytest -q conformance -p no:cacheprovider $(PYTEST_ARGS)

bench-codec: $(STAMP)
	$(PY) tests/bench/bench_codec.py

# Broker benchmark: a real broker process driven by rhea (npm, pinned by the lock file).
# RabbitMQ 3.10 beside it (Debian's rabbitmq-server, its own node on 127.0.0.1:27690,
# stopped at the end; apt as root): ARGS=--rabbitmq310 or BENCH_RABBITMQ310=1.
BENCH_STAMP := tests/bench/node_modules/.installed

$(BENCH_STAMP): tests/bench/package.json tests/bench/package-lock.json
	cd tests/bench && npm ci --no-audit --no-fund
	touch $(BENCH_STAMP)

bench: $(STAMP) $(BENCH_STAMP)
	$(PY) tests/bench/bench_broker.py $(ARGS)
	$(PY) tests/bench/bench_tls.py
	$(PY) tests/bench/bench_routing.py
	$(PY) tests/bench/bench_filters.py
	$(PY) tests/bench/bench_engine.py
	$(PY) tests/bench/bench_startup.py
	$(PY) tests/bench/bench_heartbeats.py
	$(PY) tests/bench/bench_durable.py
	$(PY) tests/bench/bench_gateway.py

# The gateway in front of an upstream broker (tests/bench/bench_gateway.py): RabbitMQ 4
# if ../shared/rabbitmq4 runs one on 127.0.0.1:45672, else this broker.
bench-gateway: $(STAMP) $(BENCH_STAMP)
	$(PY) tests/bench/bench_gateway.py $(ARGS)

# TLS next to the plain listeners: throughput and CPU, and opening 1,000 connections
bench-tls: $(STAMP) $(BENCH_STAMP)
	$(PY) tests/bench/bench_tls.py $(ARGS)

# Cost curves (queues, backlog, idle connections, stream fan-out, message size, latency)
# in one run, about 10 minutes: a table, tests/bench/results/scale.jsonl and scale.png
# (matplotlib, the bench extra).  Bigger sizes: BENCH_SCALE_* (tests/bench/bench_scale.py).
# RabbitMQ 3.10's points beside ours (TCP; no stream fan-out): BENCH_SCALE_RABBITMQ310=1.
bench-scale: $(STAMP) $(BENCH_STAMP)
	$(PY) -c 'import matplotlib' 2>/dev/null || $(PY) -m pip install -q 'matplotlib>=3.8' \
		|| echo "matplotlib did not install: no PNG this time"
	$(PY) tests/bench/bench_scale.py $(ARGS)

# The bunny demo: builds rhea's browser bundle, starts the broker with the stream
# `bunny` and serves the drawing page on http://127.0.0.1:8000/.
bunny: $(STAMP)
	$(PY) examples/bunny/serve.py $(ARGS)

# The pub/sub and RPC demo: builds rhea's browser bundle, starts the broker and
# serves the page on http://127.0.0.1:8001/.
pubsub-rpc: $(STAMP)
	$(PY) examples/pubsub-rpc/serve.py $(ARGS)

# The ticker demo: builds rhea's browser bundle, starts the broker with the last-value
# queue `ticker` and serves the price board on http://127.0.0.1:8002/.
ticker: $(STAMP)
	$(PY) examples/ticker/serve.py $(ARGS)

lint: $(STAMP)
	$(PY) -m pip install --quiet ruff mypy
	$(VENV)/bin/ruff check broker tests
	$(VENV)/bin/mypy --strict broker

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis

# RabbitMQ 4 parity: the rabbitmq-amqp-python-client and rhea cases of
# conformance/test_rabbitmq_client.py against a real RabbitMQ 4.0.5 on
# 127.0.0.1:$(RMQ4_PORT) (../shared/rabbitmq4; `start` returns at once when it
# is already running).  `make conformance` runs the same cases against ours.
RMQ4 ?= ../shared/rabbitmq4/rabbitmq4.sh
RMQ4_PORT ?= 45672
.PHONY: parity

parity: $(STAMP) $(NODE_STAMP)
	if [ -f "$(RMQ4)" ]; then RMQ4_PORT=$(RMQ4_PORT) bash $(RMQ4) start; fi
	PARITY_TARGET=rabbitmq4 RMQ4_PORT=$(RMQ4_PORT) $(PY) -m pytest -q conformance/test_rabbitmq_client.py -p no:cacheprovider $(PYTEST_ARGS)

# Gateway parity: the gateway suite (conformance/test_gateway.py and
# browser/test_gateway_browser.py) with `amqpws-broker gateway` in front of that
# RabbitMQ 4.0.5 instead of a second `serve`.  The upstream-restart case stops and
# starts the node, so it runs only with GATEWAY_RMQ4_RESTART=1 (point RMQ4_PORT and
# RMQ4_CHROOT at a node of your own).  `make conformance` runs the same against ours.
.PHONY: gateway-parity

gateway-parity: $(STAMP) $(NODE_STAMP)
	if [ -f "$(RMQ4)" ]; then RMQ4_PORT=$(RMQ4_PORT) bash $(RMQ4) start; fi
	GATEWAY_UPSTREAM=rabbitmq4 RMQ4_PORT=$(RMQ4_PORT) $(PY) -m pytest -q conformance/test_gateway.py conformance/browser/test_gateway_browser.py -p no:cacheprovider $(PYTEST_ARGS)

# The gateway suite (conformance/test_gateway.py) in front of a real RabbitMQ in CI:
# Debian's RabbitMQ 3.10 with its AMQP 1.0 plugin, a private node on
# 127.0.0.1:$(RMQ310_PORT) started by conformance/rabbitmq310.sh (which apt-installs
# rabbitmq-server when it is missing, as root).  The node is stopped whatever the outcome.
RMQ310_PORT ?= 27672
.PHONY: gateway-rabbitmq310

gateway-rabbitmq310: $(STAMP) $(NODE_STAMP)
	export RMQ310_PORT=$(RMQ310_PORT); trap 'bash conformance/rabbitmq310.sh stop' EXIT; \
	bash conformance/rabbitmq310.sh start && \
	GATEWAY_UPSTREAM=rabbitmq310 $(PY) -m pytest -q conformance/test_gateway.py -p no:cacheprovider $(PYTEST_ARGS)

# Fuzzing (tests/fuzz/): the engine and container fed mutated frames after valid
# headers, with a bystander connection whose state must stay untouched.  atheris
# (coverage-guided) when it installs, else the seeded random engine.  Findings:
# tests/fuzz/findings/ (an input .bin and a report .txt each); exit 1 on any.
# Replay one: make fuzz FUZZ_ENGINE=random FUZZ_ARGS="--replay tests/fuzz/findings/X.bin".
FUZZ_ITERATIONS ?= 1000000
FUZZ_SECONDS ?= 0
FUZZ_SEED ?= 1
FUZZ_ENGINE ?= auto
FUZZ_JOBS ?= 1
.PHONY: fuzz loadtest

fuzz: $(STAMP)
	if [ "$(FUZZ_ENGINE)" != random ]; then $(PY) -m pip install --quiet atheris \
		|| echo "atheris did not install: the random engine runs instead"; fi
	PYTHONPATH=tests $(PY) -m fuzz --engine $(FUZZ_ENGINE) --iterations $(FUZZ_ITERATIONS) \
		--seconds $(FUZZ_SECONDS) --seed $(FUZZ_SEED) --jobs $(FUZZ_JOBS) $(FUZZ_ARGS)

# Overload figures against a real broker on loopback (bounded, prints, asserts no loss).
loadtest: $(STAMP)
	$(PY) tests/bench/loadtest.py $(ARGS)
