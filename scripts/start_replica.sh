#!/usr/bin/env bash
# A PostgreSQL streaming replica of the primary on 127.0.0.1:5432, on 127.0.0.1:5433, for the
# read-replica test (tests/test_read_replica.py). Loopback only. Idempotent: a replica already
# answering on the port is kept. Needs root (it runs the server as the postgres user).
set -euo pipefail
PRIMARY_PORT=5432
PORT=${REPLICA_PORT:-5433}
DIR=${REPLICA_DIR:-/var/tmp/spehub-replica}
bindir=$(pg_config --bindir)

if pg_isready -h 127.0.0.1 -p "$PORT" -q 2>/dev/null; then
  if [ "$(psql -h 127.0.0.1 -p "$PORT" -U postgres -tAc 'SELECT pg_is_in_recovery()')" = "t" ]; then
    echo "replica already streaming on 127.0.0.1:$PORT"
    exit 0
  fi
  echo "something that is not a replica answers on 127.0.0.1:$PORT" >&2
  exit 1
fi

# Replication connections from loopback, without a password (like the tests' own connections).
hba=$(psql -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -tAc 'SHOW hba_file')
if ! grep -qE '^host\s+replication\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
  sed -i '1i host replication all 127.0.0.1/32 trust' "$hba"
  psql -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -qtAc 'SELECT pg_reload_conf()' >/dev/null
fi

rm -rf "$DIR"
mkdir -p "$DIR"
chown postgres: "$DIR"
chmod 700 "$DIR"
# -R: standby.signal and primary_conninfo, so the copy starts as a streaming replica.
runuser -u postgres -- "$bindir/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$DIR" -R -X stream -c fast
# Debian keeps the configuration outside the data directory: the replica gets its own.
cat > "$DIR/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '/tmp'
hot_standby = on
max_connections = 100
CONF
printf 'local all all trust\nhost all all 127.0.0.1/32 trust\n' > "$DIR/pg_hba.conf"
: > "$DIR/pg_ident.conf"
chown postgres: "$DIR"/*.conf
runuser -u postgres -- "$bindir/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -t 60 start
for _ in $(seq 1 30); do
  [ "$(psql -h 127.0.0.1 -p "$PORT" -U postgres -tAc 'SELECT pg_is_in_recovery()' 2>/dev/null)" = "t" ] && break
  sleep 1
done
psql -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -tAc \
  "SELECT 'streaming to ' || count(*) || ' replica(s)' FROM pg_stat_replication WHERE state = 'streaming'"
