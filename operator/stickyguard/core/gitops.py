"""Is a workload managed by a GitOps reconciler (pure)? A reconciler with self-heal re-applies
the spec from Git, so the rollout guard must not fight it by changing fields Git owns
(`spec.paused`, `spec.template`); it contains the bad version by draining instead.

Judged from what Argo CD and Flux leave on the objects they apply: tracking labels and
annotations, and the field managers in `metadata.managedFields`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Labels / annotations each tool sets on what it applies (any value).
MARKERS: dict[str, tuple[str, ...]] = {
    "Argo CD": ("argocd.argoproj.io/tracking-id", "argocd.argoproj.io/instance"),
    "Flux": (
        "kustomize.toolkit.fluxcd.io/name",
        "kustomize.toolkit.fluxcd.io/namespace",
        "helm.toolkit.fluxcd.io/name",
    ),
}
# Field managers of their appliers (server-side apply and client-side apply alike).
MANAGERS: dict[str, tuple[str, ...]] = {
    "Argo CD": ("argocd-controller", "argocd-application-controller"),
    "Flux": ("kustomize-controller", "helm-controller"),
}


@dataclass(frozen=True)
class Management:
    tool: str | None  # "Argo CD", "Flux", or None when nothing says so
    evidence: str  # what said so, for status and `doctor`

    @property
    def managed(self) -> bool:
        return self.tool is not None


UNMANAGED = Management(None, "no GitOps tracking label, annotation or field manager")


def management(
    labels: Mapping[str, str], annotations: Mapping[str, str], managers: Iterable[str]
) -> Management:
    """Who manages the object, from its labels, annotations and field managers."""
    marks = {**labels, **annotations}
    for tool, keys in MARKERS.items():
        for key in keys:
            if key in marks:
                return Management(tool, f"{key}={marks[key]}")
    names = set(managers)
    for tool, known in MANAGERS.items():
        for manager in known:
            if manager in names:
                return Management(tool, f"field manager {manager}")
    return UNMANAGED
