"""The one way stickyguard builds a Kubernetes client: from a kubeconfig file (and context) when
given, else the in-cluster ServiceAccount. The operator, `status`, `doctor` and `analyze` all
call this, so they authenticate alike."""

from __future__ import annotations

from kubernetes import client, config


def build_api_client(
    kubeconfig: str | None, context: str | None = None, *, in_cluster_fallback: bool = True
) -> client.ApiClient:
    """A client for `kubeconfig` (or $KUBECONFIG / ~/.kube/config when None); in cluster, the
    pod's ServiceAccount when no kubeconfig can be loaded and `in_cluster_fallback` holds."""
    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except config.ConfigException:
        if kubeconfig or not in_cluster_fallback:
            raise
        config.load_incluster_config()
        return client.ApiClient()


def build_in_cluster() -> client.ApiClient:
    """The pod's ServiceAccount (the operator's Deployment passes no kubeconfig)."""
    config.load_incluster_config()
    return client.ApiClient()
