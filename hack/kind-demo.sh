#!/usr/bin/env bash
# `make kind-demo`: the incident on kind. Deploys the demo shop (manifests/demo), breaks two of
# its six pods with a quality bug, runs 300 users with cookie jars through Traefik (sticky
# cookies; a drained pod's users are re-pinned) and prints how many were hurt, while stickyguard
# drains the two pods. Needs `make kind-deploy` first: the shop's pods carry stickyguard's
# readiness gate and are not Ready until the operator marks them serving.
set -euo pipefail
ns=stickyguard-demo
kubectl apply -k manifests/demo
kubectl -n "$ns" rollout status deploy/shop deploy/traefik deploy/prometheus --timeout=180s
mapfile -t pods < <(kubectl -n "$ns" get pods -l app=shop -o name | head -2)
for p in "${pods[@]}"; do
  echo "breaking $p (30% of its answers degraded)"
  kubectl -n "$ns" exec "$p" -- python -c \
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/fault?rate=0.3')"
done
kubectl -n "$ns" delete job users --ignore-not-found
kubectl -n "$ns" create job users --image=stickyguard-demo:dev -- \
  python -m stickyguard_lab.loadgen --host traefik --port 80 --users 300 --duration 300
kubectl -n "$ns" wait --for=condition=complete job/users --timeout=900s
kubectl -n "$ns" logs job/users | tail -1
kubectl -n stickyguard-system exec deploy/stickyguard -- stickyguard status -n "$ns"
