"""Session fixtures: the real lab environment (control plane, node agent, Prometheus)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from stickyguard_lab import testenv


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testenv.LabEnv]:
    """One real environment for the whole session; torn down at the end."""
    # Under pytest-xdist every worker runs its own environment (its own control plane,
    # Prometheus and operator), so tests on different workers never share a cluster.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    fixed = os.environ.get("STICKYGUARD_TEST_STATE")
    state = Path(fixed) / worker if fixed else tmp_path_factory.mktemp("lab")
    env = testenv.up(state / "env")
    try:
        yield env
    finally:
        env.down()


@pytest.fixture(scope="session")
def api_client(lab: testenv.LabEnv) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(lab.kubeconfig))


@pytest.fixture(scope="session")
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def apps(api_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def crd_installed(lab: testenv.LabEnv) -> None:
    """The StickyPolicy CRD, applied server-side, established and served."""
    from stickyguard_lab.operatorproc import install_crd

    install_crd(lab)


# Test files that bind fixed host ports (the rendered Deployment's 8080-8082, the demo app's
# 8080 on 127.18.x.y): `make test` runs them on their own, one after the other, after the rest
# ran on two pytest-xdist workers (one file per worker at a time).
FIXED_PORTS = {
    "test_manifests.py",
    "test_demo_lab.py",
    "test_traefik.py",
    "test_image.py",
    "test_security.py",
    "test_one_line_errors.py",
}


@pytest.hookimpl(tryfirst=True)  # before -m selects on the mark
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in FIXED_PORTS:
            item.add_marker(pytest.mark.fixed_ports)
