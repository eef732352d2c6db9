"""The pure core: the policy model, PromQL templates, statistics, detection and analysis, the
planner, the rollout judge, status and doctor logic, and the one cycle step that ties them.

Nothing here does I/O: every function takes plain data (snapshots) and returns plain data, so
the operator, `stickyguard analyze` and the simulator share one implementation of each decision.
"""
