#!/bin/sh
# Generates this installation's secrets for the compose stack, one file each, into
# the directory given (default: deploy/compose/secrets, git-ignored). Existing
# files are kept, so running it again changes nothing; delete a file to rotate it.
#
#   sh deploy/compose/make-secrets.sh [directory]
#
# The directory is 0700; the files are 0444 because compose bind-mounts them into
# containers whose users (emporium 10001, postgres, rabbitmq...) are not the
# owner on the host. Nothing here is a published default: every value is random.
set -eu

directory=${1:-$(dirname "$0")/secrets}
umask 077
mkdir -p "$directory"
chmod 0700 "$directory"

random() { # $1 bytes, URL-safe base64 without padding
  head -c "$1" /dev/urandom | base64 | tr -d '\n=' | tr '+/' '-_'
}

# write NAME VALUE: only if the file does not exist yet
write() {
  if [ ! -e "$directory/$1" ]; then
    printf '%s\n' "$2" > "$directory/$1"
    chmod 0444 "$directory/$1"
  fi
}

write postgres_password "$(random 24)"
write replication_password "$(random 24)"
write rabbitmq_password "$(random 24)"
write redis_password "$(random 24)"
write grafana_admin_password "$(random 18)"

# The URLs carry the passwords written above (read back, so a kept file stays in step).
read_secret() { tr -d '\n' < "$directory/$1"; }
write database_url "postgres://emporium:$(read_secret postgres_password)@postgres:5432/emporium"
write redis_url "redis://:$(read_secret redis_password)@redis:6379/0"
write broker_url "amqp://emporium:$(read_secret rabbitmq_password)@rabbitmq:5672/%2F"
# The stack's mail catcher takes mail without a login; an SMTP server with one goes
# here as smtp+tls://user:password@host:587 (the root file system is read-only, so
# the embedded profile's mail files are not an option).
write email_url "smtp://mail:1025"
write rabbitmq_conf "default_user = emporium
default_pass = $(read_secret rabbitmq_password)"
write redis_conf "requirepass $(read_secret redis_password)"

# The app's keys (config/settings/env.py): Django's SECRET_KEY, the AES-256 key of
# the sealed columns (kid:base64 of 32 bytes), the Ed25519 seed of the access tokens.
write secret_key "$(random 64)"
write encryption_keys "k1:$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
write jwt_private_keys "k1:$(head -c 32 /dev/urandom | base64 | tr -d '\n' | tr '+/' '-_')"
write payment_webhook_secret "$(random 32)"
write payment_provider_api_key "$(random 32)"
write metrics_token "$(random 32)"

echo "secrets in $directory"
