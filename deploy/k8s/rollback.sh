#!/bin/sh
# Returns every Emporium Deployment to its previous revision and waits for it:
# what the CD workflow runs when the smoke test fails after deploy.sh.
set -eu
namespace=${NAMESPACE:-emporium}
timeout=${ROLLOUT_TIMEOUT:-600}
for deployment in $(kubectl -n "$namespace" get deployments -l app.kubernetes.io/name=emporium -o name); do
  kubectl -n "$namespace" rollout undo "$deployment"
done
for deployment in $(kubectl -n "$namespace" get deployments -l app.kubernetes.io/name=emporium -o name); do
  kubectl -n "$namespace" rollout status "$deployment" --timeout="${timeout}s"
done
