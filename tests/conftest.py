"""Session fixtures: the real lab environment (control plane, node agent, Prometheus)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from stickyguard.lab import testenv


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testenv.LabEnv]:
    """One real environment for the whole session; torn down at the end."""
    state = Path(os.environ.get("STICKYGUARD_TEST_STATE") or tmp_path_factory.mktemp("lab"))
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
    from stickyguard.lab.operatorproc import install_crd

    install_crd(lab)
