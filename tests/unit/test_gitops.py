"""GitOps management is recognised from what Argo CD and Flux leave on objects, and nothing
else counts (a Helm release alone is not a reconciler)."""

from __future__ import annotations

import pytest

from stickyguard.core.gitops import management


@pytest.mark.parametrize(
    ("labels", "annotations", "managers", "tool"),
    [
        ({}, {"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/web"}, [], "Argo CD"),
        ({"kustomize.toolkit.fluxcd.io/name": "apps"}, {}, [], "Flux"),
        ({"helm.toolkit.fluxcd.io/name": "web"}, {}, [], "Flux"),
        ({}, {}, ["kube-controller-manager", "kustomize-controller"], "Flux"),
        ({}, {}, ["argocd-controller"], "Argo CD"),
        (
            {"app.kubernetes.io/instance": "web", "app.kubernetes.io/managed-by": "Helm"},
            {},
            ["helm"],
            None,
        ),
        ({}, {}, ["kubectl-client-side-apply", "kube-controller-manager"], None),
    ],
)
def test_management(
    labels: dict[str, str], annotations: dict[str, str], managers: list[str], tool: str | None
) -> None:
    m = management(labels, annotations, managers)
    assert m.tool == tool
    assert m.managed is (tool is not None)
    assert m.evidence
