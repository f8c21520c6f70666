#!/usr/bin/env bash
# Promotes the streaming replica to primary after the primary is lost
# (docs/fault_tolerance.md, "Runbook: the database primary is lost").
#
#   deploy/postgres/failover.sh                      # make cluster's primary and replica
#   OLD_PRIMARY=/srv/pg/primary REPLICA=/srv/pg/replica deploy/postgres/failover.sh
#
# 1. Fences the old primary: if its postmaster still runs on this host it is stopped at
#    once (pg_ctl stop -m immediate), so two primaries never take writes. On another host,
#    fence it there first (stop it, or cut it off the network) before running this.
# 2. Promotes the replica (pg_ctl promote) and waits until it accepts writes.
# 3. Prints what to do next: point DATABASE_URL of every app server, worker, beat, relay
#    and publisher at the promoted server (or move the address or DNS name they use), and
#    drop DATABASE_REPLICA_URLS until a new replica is made from it with
#    `deploy/postgres/pgcluster.py replica`.
set -euo pipefail
cd "$(dirname "$0")/../.."

OLD_PRIMARY=${OLD_PRIMARY:-var/cluster/postgres/primary}
REPLICA=${REPLICA:-var/cluster/postgres/replica}
PYTHON=${PYTHON:-$(command -v python3)}

args=(failover --replica "$REPLICA")
if [ -d "$OLD_PRIMARY" ]; then
  args+=(--old-primary "$OLD_PRIMARY")
fi
"$PYTHON" deploy/postgres/pgcluster.py "${args[@]}"
"$PYTHON" deploy/postgres/pgcluster.py status --data "$REPLICA"
cat <<'NEXT'
Next: point DATABASE_URL at the promoted server and restart (or reload) the app servers,
workers, beat, relay and publisher; remove it from DATABASE_REPLICA_URLS; make a new
replica from it (deploy/postgres/pgcluster.py replica --primary-port <its port> ...);
take a new base backup (make backup): the promoted server is on a new timeline.
NEXT
