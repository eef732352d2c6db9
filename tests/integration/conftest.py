"""Fixtures of the integration tests that run the operator: the operator process (as its
ServiceAccount, with its webhook and gate), and a fleet of pods with a synthetic exporter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from operator_support import Fleet, Story
from stickyguard.core.names import GROUP, PLURAL, VERSION
from stickyguard_lab import testenv
from stickyguard_lab.operatorproc import (
    OperatorProcess,
    install_rbac,
    register_webhook,
    service_account_kubeconfig,
)
from stickyguard_lab.pki import issue_serving_cert
from stickyguard_lab.procs import Supervisor, free_port

GVR = (GROUP, VERSION, PLURAL)


@pytest.fixture(scope="session")
def sa_kubeconfig(lab: testenv.LabEnv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    install_rbac(lab)
    return service_account_kubeconfig(lab, tmp_path_factory.mktemp("sa") / "kubeconfig")


@pytest.fixture(scope="session")
def operator(
    lab: testenv.LabEnv, sa_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    work = tmp_path_factory.mktemp("operator")
    pki = lab.control_plane.pki
    cert, key = issue_serving_cert(work, pki.ca_cert, pki.ca_key, "webhook", ["127.0.0.1"])
    port = free_port()
    sup = Supervisor(work)
    op = OperatorProcess(
        sup, sa_kubeconfig, lab.prometheus.url, webhook=(port, cert, key), gate_port=free_port()
    )
    op.start()
    register_webhook(lab, port)
    yield op
    sup.stop_all()


@pytest.fixture(scope="session")
def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def fleet(
    lab: testenv.LabEnv, core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str
) -> Iterator[Fleet]:
    f = Fleet(lab, core, apps, namespace)
    yield f
    f.close()


@pytest.fixture
def story(
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
) -> Story:
    """Given/when/then steps on this test's fleet, with the session's operator."""
    return Story(operator, fleet, custom, core, namespace)
