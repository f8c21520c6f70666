#!/usr/bin/env bash
# Installs (apt) and starts, where missing, the servers the production profile
# needs on this machine: PostgreSQL, Redis and RabbitMQ, all on 127.0.0.1.
# Used by CI (.ci/run) and by the benchmarks (make bench); safe to run again.
set -euo pipefail

log() { printf '\n== %s\n' "$*"; }
port_open() { timeout 1 bash -c "</dev/tcp/127.0.0.1/$1" 2>/dev/null; }
wait_for_port() {
  local port=$1 name=$2 tries=${3:-60}
  for _ in $(seq "$tries"); do port_open "$port" && return 0; sleep 1; done
  echo "$name did not open port $port" >&2
  return 1
}

log "system packages"
missing=()
command -v pg_ctlcluster >/dev/null || missing+=(postgresql postgresql-contrib)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server)
command -v make >/dev/null || missing+=(make)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

log "PostgreSQL"
if ! port_open 5432; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_for_port 5432 PostgreSQL
fi
# A fresh Debian cluster asks TCP clients for a password; give postgres one.
# Where the cluster trusts local TCP (as on the development machines) it is ignored.
if command -v runuser >/dev/null && id postgres >/dev/null 2>&1; then
  runuser -u postgres -- psql -q -c "ALTER USER postgres PASSWORD 'postgres'" >/dev/null 2>&1 || true
fi

log "Redis"
if ! port_open 6379; then
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for_port 6379 Redis
fi

log "RabbitMQ"
if ! port_open 5672; then
  rabbitmq-server -detached
  wait_for_port 5672 RabbitMQ 120
fi
