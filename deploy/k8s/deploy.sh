#!/bin/sh
# Rolls Emporium out to the cluster of the current kubectl context:
#
#   deploy/k8s/deploy.sh [migrate|rollout] ghcr.io/<owner>/emporium@sha256:<digest>
#
# Without a step name it does both, in order (the CD workflow runs them as two
# steps, so that it rolls back only what a rollout changed):
# 1. (migrate) the namespace and the ConfigMap (the Secret emporium-secrets must exist);
# 2. the migration Job with the new image, recreated (a Job's pod template cannot
#    change) and awaited: a failed migration stops here, before any pod changes;
# 3. (rollout) every manifest of kustomization.yaml with the new image, then each
#    Deployment's rollout is awaited (the probes decide when a pod is ready).
# Migrations must keep the previous release working, since rollback.sh returns
# the Deployments to it without reversing the schema.
set -eu

case "${1:-}" in
  migrate | rollout) steps=$1; shift ;;
  *) steps="migrate rollout" ;;
esac
image=${1:?usage: deploy.sh [migrate|rollout] <image reference>}
namespace=${NAMESPACE:-emporium}
timeout=${ROLLOUT_TIMEOUT:-600}
cd "$(dirname "$0")"

migrate() {
  kubectl apply -f namespace.yaml -f configmap.yaml

  kubectl -n "$namespace" delete job emporium-migrate --ignore-not-found --wait=true
  sed "s|^\\([[:space:]]*image:\\) emporium\$|\\1 $image|" job-migrate.yaml | kubectl -n "$namespace" apply -f -
  waited=0
  while :; do
    succeeded=$(kubectl -n "$namespace" get job emporium-migrate -o 'jsonpath={.status.succeeded}')
    failed=$(kubectl -n "$namespace" get job emporium-migrate -o 'jsonpath={.status.conditions[?(@.type=="Failed")].status}')
    [ "${succeeded:-0}" -ge 1 ] && break
    if [ "$failed" = "True" ] || [ "$waited" -ge "$timeout" ]; then
      echo "the migration did not complete" >&2
      kubectl -n "$namespace" logs job/emporium-migrate --tail=100 >&2 || true
      exit 1
    fi
    sleep 5
    waited=$((waited + 5))
  done
}

rollout() {
  kustomize edit set image "emporium=$image"
  kubectl apply -k .
  for deployment in $(kubectl -n "$namespace" get deployments -l app.kubernetes.io/name=emporium -o name); do
    kubectl -n "$namespace" rollout status "$deployment" --timeout="${timeout}s"
  done
}

for step in $steps; do
  "$step"
done
