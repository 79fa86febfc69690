# The two commands: `make demo` runs the whole bundle on real data on this
# machine, `make test` runs the whole suite. Both install what is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data
DEBIAN_PACKAGES := prometheus prometheus-alertmanager victoria-metrics docker-compose chromium

.PHONY: deps system-deps test lint demo clean bench-receiver bench-exporter eval-diagnosis eval-optimizer train-optimizer eval-detector bench-detector generate dashboards reference k8s-rules

deps: system-deps $(VENV)/.installed

# Debian's binaries: a real Prometheus, promtool, Alertmanager and amtool.
system-deps:
	@missing=""; \
	for bin in prometheus promtool prometheus-alertmanager amtool victoria-metrics docker-compose chromium; do \
	  command -v $$bin >/dev/null || missing=yes; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "install as root: apt-get install $(DEBIAN_PACKAGES)" >&2; exit 1; \
	  fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES); \
	fi

# torch is pinned in pyproject.toml so that pip takes the CPU build.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

test: deps
	$(BIN)/pytest -q

lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

demo: deps
	$(BIN)/aiops demo --data $(DATA) $(if $(KEEP),--keep)

# Generated files, committed and compared in tests: run after changing
# dashboards, rules, metrics or config keys.
generate: dashboards reference k8s-rules

dashboards: deps
	$(BIN)/python -m grafana

reference: deps
	$(BIN)/python -m aiops_cli.reference --write README.md

k8s-rules: deps
	$(BIN)/python deploy/kubernetes/render_rules.py

# Benchmarks and evaluations: outside `make test`; each ends with `RESULT <json>`.
bench-receiver: deps
	$(BIN)/python -m benchmarks.bench_receiver $(if $(BENCH_SECONDS),--seconds $(BENCH_SECONDS)) $(if $(BENCH_SYNC),--sync $(BENCH_SYNC))

# Backtest over ../shared/data/nab, scored with ../shared/tools/score-detection.
eval-detector: deps
	$(BIN)/python benchmarks/eval_detector.py

# 10,000 series with the full model suite, against a Prophet fit (Prophet
# lives in .venv-bench, never in the project's environment).
bench-detector: deps
	$(BIN)/python benchmarks/bench_detector.py

# Replays the four usage files under ../shared/data/ALLOCATION-PROTOCOL.md,
# and scores a learnt prior on series it did not learn from (cross-fitting).
eval-optimizer: deps
	$(BIN)/python -m benchmarks.eval_optimizer --data $(DATA)

# Learns the `bandit-prior` policy's weights from every usage file's series.
train-optimizer: deps
	$(BIN)/python -m benchmarks.train_optimizer --data $(DATA)

# 60 labelled root-cause scenarios on real pod series and this host's /proc.
eval-diagnosis: deps
	$(BIN)/python -m benchmarks.eval_diagnosis --data $(DATA)

# Side by side with Debian's process-exporter on the same 1,000 processes.
bench-exporter: deps
	command -v prometheus-process-exporter >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	   apt-get install -y -qq --no-install-recommends prometheus-process-exporter)
	$(BIN)/python benchmarks/bench_exporter.py

clean:
	rm -rf $(VENV) *.egg-info
