"""Every name stickyguard shares with the cluster, in one place: the API group, version and
plural of StickyPolicy, the annotations, labels and conditions it writes on other objects, and
the timestamp format of those annotations. Tests, the lab and docs import these; renaming one
is a breaking change for users' scripts and GitOps diffs."""

from __future__ import annotations

import datetime as dt
from typing import Any

GROUP = "stickyguard.dev"
VERSION = "v1alpha1"
PLURAL = "stickypolicies"
KIND = "StickyPolicy"
API_VERSION = f"{GROUP}/{VERSION}"

# The readiness-gate condition type and the Service-selector label: one name for both methods.
SERVING = f"{GROUP}/serving"

# Pods
DRAINED_BY = f"{GROUP}/drained-by"
DRAINED_AT = f"{GROUP}/drained-at"
DRAIN_REASON = f"{GROUP}/drain-reason"
DRAIN_METHOD = f"{GROUP}/drain-method"  # the method a pod was drained with: restore undoes it
UNDRAIN = f"{GROUP}/undrain"
ISOLATED_AT = f"{GROUP}/isolated-at"
# The version (pod-template-hash) a pod was drained for by the rollout guard's containment.
CONTAINED = f"{GROUP}/contained-version"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
POD_TEMPLATE_HASH = "pod-template-hash"
# Argo Rollouts labels the ReplicaSets and pods of a Rollout with its own hash instead.
ROLLOUTS_POD_TEMPLATE_HASH = "rollouts-pod-template-hash"

# Nodes
CORDONED_BY = f"{GROUP}/cordoned-by"
CORDON_REASON = f"{GROUP}/cordon-reason"

# Deployments (rollout guard)
PAUSED_BY = f"{GROUP}/paused-by"
PAUSED_REASON = f"{GROUP}/paused-reason"
PAUSED_REVISION = f"{GROUP}/paused-revision"  # the revision a pause was for
HOLD_REVISION = f"{GROUP}/hold-revision"
HOLD_STARTED = f"{GROUP}/hold-started"
HOLD_DONE = f"{GROUP}/hold-done-revision"
ROLLED_BACK = f"{GROUP}/rolled-back"

# kopf's own bookkeeping on StickyPolicy objects
KOPF_PREFIX = f"kopf.{GROUP}"

# Kubernetes labels stickyguard reads for attribution
ZONE_LABEL = "topology.kubernetes.io/zone"
VERSION_LABELS = ("version", "app.kubernetes.io/version")


def rfc3339(t: float) -> str:
    """A Unix time as the RFC 3339 UTC text used in annotations and status."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: Any) -> float | None:
    """The Unix time of an RFC 3339 text; None for anything else (never raises)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
