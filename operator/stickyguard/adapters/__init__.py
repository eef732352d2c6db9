"""The imperative shell's edges: Kubernetes reads and writes, the Prometheus reader and the
leader Lease. Adapters turn the outside world into the core's snapshots and the core's plans
into API calls; they decide nothing."""
