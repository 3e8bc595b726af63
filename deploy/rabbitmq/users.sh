#!/bin/sh
# One-shot (docker-compose.yml `rabbitmq-users`): a broker user per service, through the
# management API, with the rights deploy/local.sh gives them locally: a service reads only its own
# queues and publishes only its own routing keys on `enrol.events` (topic permissions). Outside
# departments get theirs as in the README's production notes. Idempotent (PUT).
set -eu
API="http://rabbitmq:15672/api"
ADMIN="enrol:$RABBITMQ_PASSWORD"
NS='[A-Za-z0-9_-]+'
put() { curl -fsS -u "$ADMIN" -H 'content-type: application/json' -X PUT "$API/$1" -d "$2" >/dev/null; }
for svc in registry payments subsidy scoring notices; do
  pw=$(printenv "RABBITMQ_PASSWORD_$(echo "$svc" | tr a-z A-Z)")
  own="$svc\\\\..+"; [ "$svc" = subsidy ] && own="$own|identity\\\\.in"
  put "users/enrol_$svc" "{\"password\": \"$pw\", \"tags\": \"\"}"
  put "permissions/%2F/enrol_$svc" "{\"configure\": \"^$NS\\\\.(events|dlx|[a-z_]+\\\\.(events|retry|dead)|$own)\$\",
    \"write\": \"^(amq\\\\.default|$NS\\\\.(events|dlx|[a-z_]+\\\\.(events|retry|dead)|$own))\$\",
    \"read\": \"^$NS\\\\.(events|dlx|$own)\$\"}"
  put "topic-permissions/%2F/enrol_$svc" "{\"exchange\": \"enrol.events\", \"write\": \"^$svc\\\\.\", \"read\": \".*\"}"
done
echo "broker users ready"
