#!/usr/bin/env bash
# Local infrastructure for development and CI on Debian 12 without Docker:
# RabbitMQ from Debian's package and FerretDB (embedded, SQLite) built from deploy/ferretdb.
# Idempotent: every step checks before it acts; running it twice starts nothing twice.
#
#   deploy/local.sh install   # Debian packages, Python venv, FerretDB launcher build (cached)
#   deploy/local.sh start     # install + start RabbitMQ and FerretDB on loopback, write var/local.env
#   deploy/local.sh stop      # stop both
#   deploy/local.sh status
#   deploy/local.sh rabbit-start                # start the broker or, when it runs, ensure its users
#   deploy/local.sh write-env                   # rewrite var/local.env (per-service broker URLs)
#   deploy/local.sh sms-start | sms-stop        # the fake SMS provider (tools/fake_sms.py) alone
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR="${ENROL_VAR_DIR:-$ROOT/var}"
VENV="$ROOT/.venv"
FERRET_BIN="$ROOT/deploy/ferretdb/bin/ferretdb-launcher"
FERRET_ADDR="${FERRETDB_ADDR:-127.0.0.1:27217}"
RABBIT_PORT="${RABBIT_PORT:-5672}"
RABBIT_NODE="enrol@localhost"
export RABBITMQ_NODENAME="$RABBIT_NODE"
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT="$RABBIT_PORT"
export RABBITMQ_DIST_PORT=$((RABBIT_PORT + 20000))
export RABBITMQ_MNESIA_BASE="$VAR/rabbitmq/mnesia"
export RABBITMQ_LOG_BASE="$VAR/rabbitmq/log"
export RABBITMQ_PID_FILE="$VAR/rabbitmq/rabbit.pid"
export RABBITMQ_ENABLED_PLUGINS_FILE="$VAR/rabbitmq/enabled_plugins"
export RABBITMQ_CONFIG_FILE="$VAR/rabbitmq/rabbitmq"   # .conf is appended by rabbitmq

say() { printf '[local] %s\n' "$*"; }

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    if [ ! -f "$VAR/.apt-updated" ]; then apt-get update -qq; mkdir -p "$VAR"; touch "$VAR/.apt-updated"; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

install() {
  mkdir -p "$VAR"
  # rabbitmq-server: the broker; prometheus: promtool for the alert-rule tests
  apt_install rabbitmq-server prometheus
  # the Debian package may have started a default node on 5672; ours is a separate node
  if [ ! -x "$VENV/bin/python" ]; then say "creating Python venv in .venv"; python3 -m venv "$VENV"; fi
  local stamp="$VENV/.requirements.sha"
  local want; want=$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing Python requirements (pinned) into .venv"
    "$VENV/bin/pip" install -q -r "$ROOT/requirements-dev.txt"
    echo "$want" >"$stamp"
  fi
  # a CJK font for the bulletins' charts (通报, services/notices/adapters/bulletin_render.py); not
  # fatal: without it the bulletins still render, with boxes for the Chinese glyphs (font_missing)
  if ! dpkg -s fonts-wqy-microhei >/dev/null 2>&1; then
    say "installing Debian package: fonts-wqy-microhei (Chinese glyphs in the bulletins' charts)"
    if [ ! -f "$VAR/.apt-updated" ]; then apt-get update -qq && touch "$VAR/.apt-updated" || true; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fonts-wqy-microhei >/dev/null \
      || say "WARNING: could not install fonts-wqy-microhei: bulletins will render without Chinese glyphs"
  fi
  # Pango for the bulletins' PDF (WeasyPrint); not fatal either: without it a bulletin has no PDF
  if ! dpkg -s libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 >/dev/null 2>&1; then
    say "installing Debian packages: libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 (the bulletins' PDF)"
    if [ ! -f "$VAR/.apt-updated" ]; then apt-get update -qq && touch "$VAR/.apt-updated" || true; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 \
      >/dev/null || say "WARNING: could not install Pango: bulletins will be stored without a PDF"
  fi
  # Chromium for the season simulator's report check (the report opens headless and its charts
  # render, tools/report_check.py); not fatal here, the simulator's test says so when it is missing
  if ! dpkg -s chromium >/dev/null 2>&1; then
    say "installing Debian package: chromium (headless check of the simulator's HTML report)"
    if [ ! -f "$VAR/.apt-updated" ]; then apt-get update -qq && touch "$VAR/.apt-updated" || true; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
      || say "WARNING: could not install chromium: the simulator's report cannot be checked in a browser"
  fi
  build_ferretdb
}

build_ferretdb() {
  # FerretDB's module is copied from the Go module cache into deploy/ferretdb/build (gitignored),
  # patched with deploy/ferretdb/patches/*.patch and built through a `replace` in a build-time copy
  # of go.mod: the committed go.mod stays plain, so `go build` there gives the unpatched launcher
  local dir="$ROOT/deploy/ferretdb" b="$ROOT/deploy/ferretdb/build"
  local src_sha; src_sha=$(cat "$dir"/*.go "$dir"/go.mod "$dir"/go.sum "$dir"/patches/*.patch | sha256sum | cut -d' ' -f1)
  if [ -x "$FERRET_BIN" ] && [ "$(cat "$FERRET_BIN.sha" 2>/dev/null)" = "$src_sha" ]; then return; fi
  say "building FerretDB v1.24.2 launcher with deploy/ferretdb/patches (Go, first time only; cached in deploy/ferretdb/bin)"
  command -v patch >/dev/null || apt_install patch
  mkdir -p "$(dirname "$FERRET_BIN")"
  local mod  # downloads FerretDB into the module cache on a fresh machine (checked against go.sum)
  mod=$(cd "$dir" && go mod download github.com/FerretDB/FerretDB && go list -m -f '{{.Dir}}' github.com/FerretDB/FerretDB)
  rm -rf "$b"; mkdir -p "$b"
  cp -R "$mod" "$b/FerretDB"; chmod -R u+w "$b/FerretDB"  # the module cache is read-only
  local p; for p in "$dir"/patches/*.patch; do patch -s -p1 -d "$b/FerretDB" <"$p"; done
  cp "$dir/go.mod" "$b/go.mod"; cp "$dir/go.sum" "$b/go.sum"
  go mod edit -replace="github.com/FerretDB/FerretDB=$b/FerretDB" "$b/go.mod"
  if ! (cd "$dir" && go build -modfile="$b/go.mod" -o "$FERRET_BIN" .); then
    say "build failed with $(go version); retrying with the toolchain the module names"
    (cd "$dir" && GOTOOLCHAIN=auto go build -modfile="$b/go.mod" -o "$FERRET_BIN" .)
  fi
  echo "$src_sha" >"$FERRET_BIN.sha"
}

secret() {  # secret NAME -> prints a generated secret kept under var/secrets (never in git); hex, since rabbitmqctl reads a leading "-" as an option
  local f="$VAR/secrets/$1"
  mkdir -p "$VAR/secrets"; chmod 700 "$VAR/secrets"
  [ -s "$f" ] || (umask 077; python3 -c 'import secrets;print(secrets.token_hex(24))' >"$f")
  cat "$f"
}

# The broker node is the machine's (every checkout here uses the one on $RABBIT_PORT), so the
# passwords of its users are the machine's too: kept once in $BROKER_SECRETS (root only) and copied
# into this checkout's var/secrets for the tools and tests. Per-checkout passwords made every
# checkout but the first either change a password another checkout's running suite logs in with,
# or fall back to one shared user.
BROKER_SECRETS="${ENROL_BROKER_SECRETS:-/var/lib/enrol-broker/secrets}"
broker_secret() {  # broker_secret NAME -> the machine's password for a broker user (made once)
  local f="$BROKER_SECRETS/$1"
  if [ ! -s "$f" ]; then
    mkdir -p "$BROKER_SECRETS"; chmod 700 "$BROKER_SECRETS" "$(dirname "$BROKER_SECRETS")"
    # adopt this checkout's older per-checkout secret if it has one (the users may already have it)
    if [ -s "$VAR/secrets/$1" ]; then (umask 077; cp "$VAR/secrets/$1" "$f.tmp"); else
      (umask 077; python3 -c 'import secrets;print(secrets.token_hex(24))' >"$f.tmp"); fi
    mv -n "$f.tmp" "$f" 2>/dev/null || true; rm -f "$f.tmp"  # another checkout made it first: theirs stands
  fi
  mkdir -p "$VAR/secrets"; chmod 700 "$VAR/secrets"
  if ! cmp -s "$f" "$VAR/secrets/$1"; then (umask 077; cp "$f" "$VAR/secrets/$1"); fi
  cat "$f"
}

ensure_user() {  # ensure_user NAME PASSWORD LISTING: make the user, or give it the machine's password
  if ! grep -qE "^$1[[:space:]]" <<<"$3"; then
    rabbitmqctl -q -n "$RABBIT_NODE" add_user "$1" "$2" >/dev/null
  elif ! rabbitmqctl -q -n "$RABBIT_NODE" authenticate_user "$1" "$2" >/dev/null 2>&1; then
    # made before the passwords were the machine's (once per user and node)
    say "setting the broker password of user $1 to the machine's ($BROKER_SECRETS/...)"
    rabbitmqctl -q -n "$RABBIT_NODE" change_password "$1" "$2" >/dev/null
  fi
}

rabbit_running() { rabbitmqctl -q -n "$RABBIT_NODE" status >/dev/null 2>&1; }

rabbit_start() {
  mkdir -p "$VAR/rabbitmq/mnesia" "$VAR/rabbitmq/log"
  [ -f "$RABBITMQ_ENABLED_PLUGINS_FILE" ] || echo "[]." >"$RABBITMQ_ENABLED_PLUGINS_FILE"
  cat >"$RABBITMQ_CONFIG_FILE.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$RABBIT_PORT
loopback_users = none
heartbeat = 30
CONF
  # Debian's wrapper runs the broker as the rabbitmq user: it must reach var/rabbitmq, also in a
  # checkout under a private folder (mktemp -d makes them 0700); each folder on the way gets the
  # traverse bit for others (o+x: no listing, no reading)
  chown -R rabbitmq:rabbitmq "$VAR/rabbitmq"
  local d="" part
  while IFS= read -r part; do  # from the root down: each check sees its parents open
    [ -n "$part" ] || continue
    d="$d/$part"
    if ! runuser -u rabbitmq -- test -x "$d" 2>/dev/null; then
      say "letting the rabbitmq user through $d (chmod o+x)"; chmod o+x "$d"
    fi
  done < <(printf '%s\n' "$VAR" | tr '/' '\n')
  if ! rabbit_running && rabbitmqctl -q -n "$RABBIT_NODE" ping >/dev/null 2>&1; then
    # the Erlang node answers but the broker does not (e.g. its data folder was removed): restart it
    say "RabbitMQ node $RABBIT_NODE is up but unhealthy; stopping it"
    rabbitmqctl -q -n "$RABBIT_NODE" stop >/dev/null 2>&1 || true
    local j; for j in $(seq 1 30); do rabbitmqctl -q -n "$RABBIT_NODE" ping >/dev/null 2>&1 || break; sleep 1; done
  fi
  if rabbit_running; then say "RabbitMQ already running ($RABBIT_NODE)"; else
    say "starting RabbitMQ on 127.0.0.1:$RABBIT_PORT"
    setsid rabbitmq-server >"$VAR/rabbitmq/log/stdout.log" 2>&1 < /dev/null &
    local i; for i in $(seq 1 120); do rabbit_running && break; sleep 1; done
    rabbit_running || { say "RabbitMQ did not start; see $VAR/rabbitmq/log"; tail -20 "$VAR/rabbitmq/log/stdout.log"; exit 1; }
    rabbitmqctl -q -n "$RABBIT_NODE" await_startup >/dev/null
  fi
  # list once: `list_users | grep -q` under pipefail fails when grep exits before the listing ends
  local users; users=$(rabbitmqctl -q -n "$RABBIT_NODE" list_users 2>/dev/null || true)
  ensure_user enrol "$(broker_secret amqp_password)" "$users"
  rabbitmqctl -q -n "$RABBIT_NODE" set_user_tags enrol administrator >/dev/null
  rabbitmqctl -q -n "$RABBIT_NODE" set_permissions -p / enrol '.*' '.*' '.*' >/dev/null
  # the outside publisher of hardship identities (docs/identity-feed.md): may write to the identity
  # exchanges `<ns>.identity.in` and nothing else (no configure, no read, no management)
  ensure_user civil_affairs "$(broker_secret civil_affairs_amqp_password)" "$users"
  rabbitmqctl -q -n "$RABBIT_NODE" set_permissions -p / civil_affairs '^$' '^[A-Za-z0-9_-]+\.identity\.in$' '^$' >/dev/null
  rabbit_scoped_users "$users"
}

# The bus as a trust boundary (README "Broker and store users"): a broker user per service and per
# outside department, each allowed only what it needs, with the machine's passwords (broker_secret):
# every checkout on this machine logs in as the same users.
NS_RE='[A-Za-z0-9_-]+'
SERVICES="registry payments subsidy scoring notices"
DEPARTMENTS="poverty_office disabled_federation health_commission"   # civil_affairs: above
rabbit_scoped_users() {
  local users=$1 svc dept own ns="${BUS_NAMESPACE:-enrol}"
  for svc in $SERVICES; do
    ensure_user "enrol_$svc" "$(broker_secret "amqp_password_$svc")" "$users"
    own="$svc\..+"; [ "$svc" = subsidy ] && own="$own|identity\.in"   # subsidy's feed exchange and queues
    # configure: the exchanges, its own queues and, for the publisher-side declare, every service's
    # event/retry/dead queue; write: the same plus the default exchange (retries, replays); read:
    # the exchanges (to bind) and its own queues only
    rabbitmqctl -q -n "$RABBIT_NODE" set_permissions -p / "enrol_$svc" \
      "^$NS_RE\.(events|dlx|[a-z_]+\.(events|retry|dead)|$own)\$" \
      "^(amq\.default|$NS_RE\.(events|dlx|[a-z_]+\.(events|retry|dead)|$own))\$" \
      "^$NS_RE\.(events|dlx|$own)\$" >/dev/null
    # publish only its own routing keys on the event exchange; bind any (a consumer binds others')
    rabbitmqctl -q -n "$RABBIT_NODE" set_topic_permissions -p / "enrol_$svc" "$ns.events" "^$svc\." '.*' >/dev/null
  done
  for dept in $DEPARTMENTS; do  # like civil_affairs: write to the identity exchanges, nothing else
    ensure_user "$dept" "$(broker_secret "${dept}_amqp_password")" "$users"
    rabbitmqctl -q -n "$RABBIT_NODE" set_permissions -p / "$dept" '^$' '^[A-Za-z0-9_-]+\.identity\.in$' '^$' >/dev/null
  done
}

rabbit_stop() {
  if rabbit_running; then say "stopping RabbitMQ"; rabbitmqctl -q -n "$RABBIT_NODE" stop >/dev/null 2>&1 || true; fi
  local i; for i in $(seq 1 60); do rabbit_running || break; sleep 0.5; done
}

ferret_running() { [ -f "$VAR/ferretdb.pid" ] && kill -0 "$(cat "$VAR/ferretdb.pid")" 2>/dev/null; }

ferret_start() {
  if ferret_running; then say "FerretDB already running on $FERRET_ADDR"; return; fi
  local host=${FERRET_ADDR%:*} port=${FERRET_ADDR##*:} i
  if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then  # another checkout's store on this machine
    say "a store already answers on $FERRET_ADDR (another checkout's FerretDB): using it"; return
  fi
  say "starting FerretDB on $FERRET_ADDR (data in var/ferretdb)"
  mkdir -p "$VAR/ferretdb"
  setsid "$FERRET_BIN" -listen "$FERRET_ADDR" -data "$VAR/ferretdb" >"$VAR/ferretdb.log" 2>&1 < /dev/null &
  echo $! >"$VAR/ferretdb.pid"
  for i in $(seq 1 50); do
    ferret_running || break
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && return
    sleep 0.2
  done
  say "FerretDB did not start; see var/ferretdb.log"; cat "$VAR/ferretdb.log"; exit 1
}

ferret_stop() {
  if ferret_running; then say "stopping FerretDB"; kill -TERM "$(cat "$VAR/ferretdb.pid")"; fi
  local i; for i in $(seq 1 50); do ferret_running || break; sleep 0.1; done
  rm -f "$VAR/ferretdb.pid"
}

# The fake SMS provider (tools/fake_sms.py, docs/notice-delivery.md): on a free port of this
# checkout's own (var/fake_sms.port), with an access key secret and a receipt token generated under
# var/secrets; its receipts go to the demo suite's notices web (SMS_RECEIPT_CALLBACK_URL).
SMS_PID="$VAR/fake_sms.pid"
SMS_KEY_ID="enrol-local"
sms_running() { [ -f "$SMS_PID" ] && kill -0 "$(cat "$SMS_PID")" 2>/dev/null; }

sms_start() {
  if sms_running; then say "fake SMS provider already running on port $(cat "$VAR/fake_sms.port")"; return; fi
  local port i
  port=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  say "starting the fake SMS provider on 127.0.0.1:$port (tools/fake_sms.py)"
  SMS_ACCESS_KEY_ID="$SMS_KEY_ID" SMS_ACCESS_KEY_SECRET="$(secret sms_access_key_secret)" \
    SMS_RECEIPT_TOKEN="$(secret sms_receipt_token)" PYTHONPATH="$ROOT" \
    SMS_RECEIPT_CALLBACK_URL="${SMS_RECEIPT_CALLBACK_URL:-http://127.0.0.1:8105/v1/sms/receipts}" \
    setsid "$VENV/bin/python" -m tools.fake_sms --port "$port" >"$VAR/fake_sms.log" 2>&1 </dev/null &
  echo $! >"$SMS_PID"; echo "$port" >"$VAR/fake_sms.port"
  for i in $(seq 1 50); do
    sms_running || break
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return
    sleep 0.1
  done
  say "the fake SMS provider did not start (notices will retry, then list them dead); see var/fake_sms.log"
  rm -f "$SMS_PID" "$VAR/fake_sms.port"
}

sms_stop() {
  if sms_running; then say "stopping the fake SMS provider"; kill -TERM "$(cat "$SMS_PID")"; fi
  local i; for i in $(seq 1 30); do sms_running || break; sleep 0.1; done
  rm -f "$SMS_PID" "$VAR/fake_sms.port"
}

write_env() {
  local svc users=""
  cat >"$VAR/local.env" <<ENV
# written by deploy/local.sh; the services and tests read these (real environment variables win)
MONGO_URL=mongodb://$FERRET_ADDR/
AMQP_URL=amqp://enrol:$(broker_secret amqp_password)@127.0.0.1:$RABBIT_PORT/%2F
ENROL_STORE_KIND=ferretdb
ENV
  for svc in $SERVICES; do  # each service on its own broker user (AMQP_URL stays for tools and tests)
    echo "AMQP_URL_${svc^^}=amqp://enrol_$svc:$(broker_secret "amqp_password_$svc")@127.0.0.1:$RABBIT_PORT/%2F" >>"$VAR/local.env"
    users="$users${users:+,}$svc=enrol_$svc"
  done
  echo "BUS_USERS=$users" >>"$VAR/local.env"  # consumers check the publishing user
  if [ -s "$VAR/fake_sms.port" ]; then  # the fake SMS provider (sms_start)
    cat >>"$VAR/local.env" <<ENV
SMS_PROVIDER_URL=http://127.0.0.1:$(cat "$VAR/fake_sms.port")/
SMS_ACCESS_KEY_ID=$SMS_KEY_ID
SMS_ACCESS_KEY_SECRET=$(secret sms_access_key_secret)
SMS_RECEIPT_TOKEN=$(secret sms_receipt_token)
ENV
  fi
  chmod 600 "$VAR/local.env"
}

case "${1:-start}" in
  install) install ;;
  start) install; rabbit_start; ferret_start; sms_start; write_env; say "ready: env in var/local.env" ;;
  stop) sms_stop; ferret_stop; rabbit_stop ;;
  status) rabbit_running && say "RabbitMQ: running" || say "RabbitMQ: stopped"; ferret_running && say "FerretDB: running" || say "FerretDB: stopped"
          sms_running && say "fake SMS provider: running" || say "fake SMS provider: stopped" ;;
  sms-start) sms_start; write_env ;;
  sms-stop) sms_stop; write_env ;;
  rabbit-stop) rabbit_stop ;;
  rabbit-start) rabbit_start ;;
  write-env) write_env ;;
  ferret-stop) ferret_stop ;;
  ferret-start) ferret_start ;;
  *) echo "usage: $0 install|start|stop|status|rabbit-stop|rabbit-start|ferret-stop|ferret-start|sms-start|sms-stop" >&2; exit 2 ;;
esac
