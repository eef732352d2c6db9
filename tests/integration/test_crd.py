"""The StickyPolicy CRD against the real apiserver: samples, defaults, admission errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from policies import INVALID, SAMPLES, load_sample, minimal
from stickyguard.core.names import GROUP, PLURAL, VERSION
from stickyguard.core.policy import parse_policy
from stickyguard_lab import testenv
from stickyguard_lab.kubectl import kubectl

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]
GVR = (GROUP, VERSION)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_sample_applies_and_round_trips_with_defaults(
    lab: testenv.LabEnv, api_client: client.ApiClient, namespace: str, sample: Path
) -> None:
    kubectl(
        lab.binaries.kubectl,
        lab.kubeconfig,
        "apply",
        "--server-side",
        "-n",
        namespace,
        "-f",
        str(sample),
    )
    name = yaml.safe_load(sample.read_text())["metadata"]["name"]
    stored: dict[str, Any] = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        *GVR, namespace, PLURAL, name
    )
    # The apiserver filled the defaults...
    assert stored["spec"]["prometheus"]["window"]
    assert stored["spec"]["actions"]["mode"] in ("Enforce", "DryRun")
    # ...and they are the model's defaults: the stored object means what the file means.
    local = parse_policy(load_sample(sample, namespace))
    served = parse_policy(stored)
    assert served == local.__class__(**{**local.__dict__, "generation": served.generation})


def test_printer_columns(lab: testenv.LabEnv, namespace: str) -> None:
    kubectl(
        lab.binaries.kubectl,
        lab.kubeconfig,
        "apply",
        "--server-side",
        "-n",
        namespace,
        "-f",
        str(SAMPLES[0]),
    )
    out = kubectl(lab.binaries.kubectl, lab.kubeconfig, "get", "sp", "-n", namespace).stdout
    header = out.splitlines()[0].split()
    assert header == ["NAME", "MODE", "PODS", "DRAINED", "CLASSIFICATION", "AMPLIFICATION", "AGE"]


@pytest.mark.parametrize(("case", "spec", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_policy_rejected_at_admission_naming_the_field(
    api_client: client.ApiClient, namespace: str, case: str, spec: dict[str, Any], field: str
) -> None:
    body = minimal(**spec)
    body["metadata"]["namespace"] = namespace
    with pytest.raises(ApiException) as info:
        client.CustomObjectsApi(api_client).create_namespaced_custom_object(
            *GVR, namespace, PLURAL, body
        )
    assert info.value.status == 422, info.value.body
    assert field in info.value.body, info.value.body
