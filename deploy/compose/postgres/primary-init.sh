#!/bin/sh
# Run once by the postgres image on an empty primary (/docker-entrypoint-initdb.d):
# a role the replica streams with, and the pg_hba line that lets it in.
set -eu
password=$(tr -d '\n' < /run/secrets/replication_password)
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v password="$password" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'password';
SELECT pg_create_physical_replication_slot('replica1');
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
