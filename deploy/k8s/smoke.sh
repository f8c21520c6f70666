#!/bin/sh
# Smoke test of a deployment from outside, through its ingress:
#
#   deploy/k8s/smoke.sh https://staging.shop.example.com
#
# /healthz and /readyz must answer 200, and the product list must answer 200 with
# a JSON page ("results" a list). Each is retried for up to $SMOKE_SECONDS (60),
# so a deployment still warming up is given the time; then the first failure fails.
set -eu

base=${1:?usage: smoke.sh <base URL>}
base=${base%/}
deadline=$(( $(date +%s) + ${SMOKE_SECONDS:-60} ))

# check NAME URL [jq filter that must print true]
check() {
  while :; do
    if body=$(curl --silent --show-error --fail --max-time 10 "$2" 2>&1); then
      if [ -z "${3:-}" ] || [ "$(printf '%s' "$body" | jq -r "$3" 2>/dev/null)" = "true" ]; then
        echo "ok: $1"
        return 0
      fi
      body="unexpected body: $(printf '%s' "$body" | head -c 300)"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "FAILED: $1 ($2): $body" >&2
      return 1
    fi
    sleep 2
  done
}

check liveness "$base/healthz"
check readiness "$base/readyz"
check "product list" "$base/api/products/?page_size=1" '.results | type == "array"'
