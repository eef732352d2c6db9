# stickyguard developer commands. `make test` is what CI runs. Each target that needs something
# from the machine first runs hack/setup.sh, which installs it (as root with apt) or says how.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
TESTENV ?= .testenv
IMAGE ?= stickyguard:dev
DEMO_IMAGE ?= stickyguard-demo:dev
KIND_CLUSTER ?= stickyguard
CERT_MANAGER ?= v1.16.2

.PHONY: help setup-venv setup-demo setup-test setup-image venv binaries peers testenv-up testenv-down test lint unit demo bench bench-scale clean image image-ci image-demo kind-up \
	kind-deploy kind-demo

help:
	@echo "make venv          create $(VENV) with stickyguard and its test tools"
	@echo "make binaries      build the pinned Kubernetes + etcd (cached outside the repo)"
	@echo "make peers         build the pinned Traefik, Argo Rollouts, Flagger (cached likewise)"
	@echo "make testenv-up    start the local control plane, node agent and Prometheus ($(TESTENV)/)"
	@echo "make testenv-down  stop them"
	@echo "make test          lint (ruff, mypy, import contracts) + the whole test suite"
	@echo "make demo          replay an incident on a local cluster, with and without the operator"
	@echo "make image         build the operator image $(IMAGE) (needs Docker)"
	@echo "make image-ci      build it without Docker (buildah on a local Debian base; root)"
	@echo "make kind-up       create the kind cluster of kind-config.yaml and install cert-manager"
	@echo "make kind-deploy   load $(IMAGE) into kind and apply manifests/overlays/kind"
	@echo "make kind-demo     the incident demo on kind (manifests/demo)"

setup-venv setup-demo setup-test setup-image:
	@PYTHON=$(PYTHON) bash hack/setup.sh $(@:setup-%=%)

$(VENV)/.installed: pyproject.toml lab/pyproject.toml
	@PYTHON=$(PYTHON) bash hack/setup.sh venv
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[test]' -e lab
	touch $@

venv: $(VENV)/.installed

binaries:
	bash hack/build-binaries.sh

# The real neighbours the tests run (Traefik, Argo Rollouts, Flagger), built in parallel and
# cached; tests that need one also call the script, which is instant once they are cached.
peers:
	bash hack/build-peers.sh

testenv-up: venv binaries
	$(PY) -m stickyguard_lab testenv up --dir $(TESTENV)

testenv-down: venv
	$(PY) -m stickyguard_lab testenv down --dir $(TESTENV)

lint: venv
	$(VENV)/bin/ruff check operator lab tests bench hack contrib
	$(VENV)/bin/ruff format --check operator lab tests bench hack contrib
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: venv
	$(VENV)/bin/pytest -q -m "not integration"

test: setup-test lint binaries peers
	$(VENV)/bin/pytest -q -n 2 --dist loadfile -m "not fixed_ports"
	$(VENV)/bin/pytest -q -m fixed_ports

demo: setup-demo venv binaries
	$(PY) -m stickyguard_lab demo --report bench/results/demo-report.json

bench: setup-demo venv binaries
	@# README quotes bench/results/analysis.md (tests/unit/test_docs.py checks every figure).
	{ printf '# Analysis benchmark\n\nProduced by `make bench` (bench/bench_analysis.py); '; \
	  printf 'synthetic fleets, median of 15 runs.\n\n'; $(PY) bench/bench_analysis.py; } \
	  > bench/results/analysis.md.part && mv bench/results/analysis.md.part bench/results/analysis.md
	cat bench/results/analysis.md
	$(PY) bench/bench_simulate.py

bench-scale: setup-demo venv binaries
	$(PY) bench/bench_scale.py --out bench/results/scale.json

image:
	docker build -t $(IMAGE) .

# The same Dockerfile without Docker (what CI builds and runs): buildah as root on a local
# debootstrap base, stored under ~/.cache/stickyguard/containers.
image-ci: setup-image
	bash hack/build-image.sh localhost/stickyguard:ci

image-demo:
	docker build --target demo -t $(DEMO_IMAGE) .

kind-up:
	kind create cluster --config kind-config.yaml
	kubectl apply -f https://github.com/cert-manager/cert-manager/releases/download/$(CERT_MANAGER)/cert-manager.yaml
	kubectl -n cert-manager rollout status deploy/cert-manager-webhook --timeout=180s

kind-deploy: image
	kind load docker-image $(IMAGE) --name $(KIND_CLUSTER)
	kubectl apply --server-side -k manifests/overlays/kind
	kubectl -n stickyguard-system rollout status deploy/stickyguard --timeout=180s

kind-demo: image-demo
	kind load docker-image $(DEMO_IMAGE) --name $(KIND_CLUSTER)
	bash hack/kind-demo.sh

clean:
	rm -rf $(VENV) $(TESTENV) .pytest_cache .mypy_cache .ruff_cache
