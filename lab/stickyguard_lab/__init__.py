"""The lab: a real local Kubernetes control plane, a node agent and Prometheus, for tests and demo.

Nothing here is mocked: the binaries are the pinned upstream releases built from the Go module
proxy (hack/build-binaries.sh) and Debian's Prometheus.
"""
