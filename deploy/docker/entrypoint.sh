#!/bin/sh
# The one entry point of the Emporium image: the first argument names the role,
# and the process of that role replaces this shell (exec), so it runs as PID 1's
# child of the runtime and receives SIGTERM directly.
#
#   web        granian on config.wsgi (HTTP API), port $PORT (8000)
#   ws         uvicorn on config.asgi (WebSockets), port $PORT (8001)
#   worker     a Celery worker on every queue of config/celery.py's TASK_QUEUES, or on
#              those $CELERY_QUEUES names (comma-separated)
#   beat       Celery beat, one per deployment
#   relay      manage.py outbox_relay
#   publisher  manage.py dashboard_publisher
#   migrate    waits for PostgreSQL (up to $DATABASE_WAIT_SECONDS, 60), then migrates
#   manage     manage.py with the remaining arguments
#   healthcheck [url]  exits 0 when GET url (http://127.0.0.1:$PORT/healthz) answers 2xx
#
# Anything else is run as given (`sh`, `python ...`). Every role takes its
# settings from the environment (config/settings/env.py); the servers start
# through emporium.core.servers, as everywhere else.
set -eu

: "${DJANGO_SETTINGS_MODULE:=config.settings.production}"
export DJANGO_SETTINGS_MODULE
PYTHON=${PYTHON:-python}

usage() {
  echo "usage: entrypoint.sh web|ws|worker|beat|relay|publisher|migrate|manage|healthcheck [arguments]" >&2
  exit 64
}

database_wait() {
  "$PYTHON" -c '
import os, sys, time
import psycopg
url = os.environ.get("DATABASE_URL")
if not url:
    sys.exit("DATABASE_URL is not set")
deadline = time.monotonic() + float(os.environ.get("DATABASE_WAIT_SECONDS", "60"))
while True:
    try:
        psycopg.connect(url, connect_timeout=3).close()
        break
    except psycopg.OperationalError as error:
        if time.monotonic() >= deadline:
            sys.exit(f"the database did not answer in time: {error}")
        print("waiting for the database", file=sys.stderr, flush=True)
        time.sleep(1)
'
}

# GET $1 with the Host header of the first ALLOWED_HOSTS entry (Django refuses
# other hosts) and X-Forwarded-Proto https (production redirects plain HTTP);
# any answer but 2xx, or none within 5 s, is a failure.
healthcheck() {
  "$PYTHON" -c '
import os, sys, urllib.request
host = (os.environ.get("ALLOWED_HOSTS") or "localhost").split(",")[0].strip()
host = "localhost" if host in ("", "*") else host.lstrip(".")
request = urllib.request.Request(sys.argv[1], headers={"Host": host, "X-Forwarded-Proto": "https"})
try:
    with urllib.request.urlopen(request, timeout=5) as response:
        sys.exit(0 if 200 <= response.status < 300 else 1)
except Exception as error:
    sys.exit(f"unhealthy: {error}")
' "$1"
}

# Secrets as files (compose secrets, Kubernetes secret volumes): NAME_FILE=/path
# sets NAME to the file's content, unless NAME itself is set. Only the secrets the
# settings read (config/settings/env.py), never any other *_FILE variable of the
# environment. A file that cannot be read stops the start.
SECRET_VARIABLES="SECRET_KEY ENCRYPTION_KEYS JWT_PRIVATE_KEYS DATABASE_URL REDIS_URL BROKER_URL
EMAIL_URL PAYMENT_WEBHOOK_SECRET PAYMENT_PROVIDER_API_KEY METRICS_TOKEN"
for name in $SECRET_VARIABLES; do
  eval "given=\${$name:-} file=\${${name}_FILE:-}"
  if [ -z "$given" ] && [ -n "$file" ]; then
    value=$(cat -- "$file") || { echo "cannot read ${name}_FILE ($file)" >&2; exit 1; }
    export "$name=$value"
  fi
done
unset name given file value

[ $# -gt 0 ] || usage
role=$1
shift

case "$role" in
  web)
    exec "$PYTHON" -m emporium.core.servers granian --interface wsgi \
      --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" \
      --workers "${WEB_WORKERS:-2}" --blocking-threads 1 \
      "$@" config.wsgi:application
    ;;
  ws)
    exec "$PYTHON" -m emporium.core.servers uvicorn config.asgi:application \
      --host "${HOST:-0.0.0.0}" --port "${PORT:-8001}" --workers "${WS_WORKERS:-1}" "$@"
    ;;
  worker)
    # Without -Q a Celery worker consumes every queue it is configured with.
    exec celery -A config worker ${CELERY_QUEUES:+-Q "$CELERY_QUEUES"} \
      --loglevel "${LOG_LEVEL:-INFO}" "$@"
    ;;
  beat)
    # The schedule file goes where the root file system may be read-only.
    exec celery -A config beat --loglevel "${LOG_LEVEL:-INFO}" \
      --schedule "${CELERY_BEAT_SCHEDULE_FILE:-/tmp/celerybeat-schedule}" "$@"
    ;;
  relay)
    exec "$PYTHON" manage.py outbox_relay "$@"
    ;;
  publisher)
    exec "$PYTHON" manage.py dashboard_publisher "$@"
    ;;
  migrate)
    database_wait
    exec "$PYTHON" manage.py migrate --no-input "$@"
    ;;
  manage)
    exec "$PYTHON" manage.py "$@"
    ;;
  healthcheck)
    healthcheck "${1:-http://127.0.0.1:${PORT:-8000}/healthz}"
    ;;
  -h | --help | help)
    usage
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
