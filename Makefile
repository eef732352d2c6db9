# stickyguard developer commands. `make test` is what CI runs (after .ci/run installs things).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
TESTENV ?= .testenv
IMAGE ?= stickyguard:dev
KIND_CLUSTER ?= stickyguard
CERT_MANAGER ?= v1.16.2

.PHONY: help venv binaries testenv-up testenv-down test lint unit demo bench bench-scale clean image kind-up \
	kind-deploy kind-demo

help:
	@echo "make venv          create $(VENV) with stickyguard and its test tools"
	@echo "make binaries      build the pinned Kubernetes + etcd (cached outside the repo)"
	@echo "make testenv-up    start the local control plane, node agent and Prometheus ($(TESTENV)/)"
	@echo "make testenv-down  stop them"
	@echo "make test          lint (ruff, mypy, import contracts) + the whole test suite"
	@echo "make demo          replay an incident on a local cluster, operator off then on"
	@echo "make image         build the operator image $(IMAGE) (needs Docker)"
	@echo "make kind-up       create the kind cluster of kind-config.yaml and install cert-manager"
	@echo "make kind-deploy   load $(IMAGE) into kind and apply manifests/overlays/kind"
	@echo "make kind-demo     the incident demo on kind (manifests/demo)"

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

binaries:
	bash hack/build-binaries.sh

testenv-up: venv binaries
	$(PY) -m stickyguard.lab testenv up --dir $(TESTENV)

testenv-down: venv
	$(PY) -m stickyguard.lab testenv down --dir $(TESTENV)

lint: venv
	$(VENV)/bin/ruff check operator tests bench hack contrib
	$(VENV)/bin/ruff format --check operator tests bench hack contrib
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: venv
	$(VENV)/bin/pytest -q -m "not integration"

test: lint binaries
	$(VENV)/bin/pytest -q

demo: venv binaries
	$(PY) -m stickyguard demo --report demo-report.json

bench: venv binaries
	$(PY) bench/bench_analysis.py
	$(PY) bench/bench_simulate.py

bench-scale: venv binaries
	$(PY) bench/bench_scale.py --out bench/results/scale.json

image:
	docker build -t $(IMAGE) .

kind-up:
	kind create cluster --config kind-config.yaml
	kubectl apply -f https://github.com/cert-manager/cert-manager/releases/download/$(CERT_MANAGER)/cert-manager.yaml
	kubectl -n cert-manager rollout status deploy/cert-manager-webhook --timeout=180s

kind-deploy: image
	kind load docker-image $(IMAGE) --name $(KIND_CLUSTER)
	kubectl apply --server-side -k manifests/overlays/kind
	kubectl -n stickyguard-system rollout status deploy/stickyguard --timeout=180s

kind-demo:
	bash hack/kind-demo.sh

clean:
	rm -rf $(VENV) $(TESTENV) .pytest_cache .mypy_cache .ruff_cache
