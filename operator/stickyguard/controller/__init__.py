"""The running operator: kopf handlers (thin: read snapshots, call the core's cycle step,
write), the gate endpoint for rollout tools, the readiness-gate webhook and the operator's own
/metrics."""
