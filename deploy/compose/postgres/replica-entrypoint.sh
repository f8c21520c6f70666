#!/bin/sh
# The streaming replica: on an empty data directory, copies the primary with
# pg_basebackup (retrying until the primary answers) and writes standby.signal and
# primary_conninfo (-R); then runs PostgreSQL as a hot standby on slot replica1.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
PGPASSWORD=$(tr -d '\n' < /run/secrets/replication_password)
export PGPASSWORD
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_basebackup --host=postgres --username=replicator --pgdata="$PGDATA" \
      --wal-method=stream --slot=replica1 --write-recovery-conf --no-password; do
    echo "waiting for the primary" >&2
    rm -rf "${PGDATA:?}"/*
    sleep 2
  done
  chmod 0700 "$PGDATA"
fi
exec postgres -c hot_standby=on -c max_standby_streaming_delay=30s
