#!/usr/bin/env bash
# The top-up saga in Pelago and in its fair PostgreSQL peer, in one run
# (issue 17): starts a throw-away PostgreSQL cluster (Debian's package,
# installed if missing; synchronous commit, fsync on), then runs
# `cargo bench --bench topups -- --with-pg URL`, which measures Pelago's two
# cases and then PostgreSQL's same two cases (the same saga, rows, fake channel
# and driver: benches/topups.rs, benches/topups_pg/) and prints one table with
# the ratio. Usage: bash benches/pg_topup.sh [seconds per case, default 8]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-8}"
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-contrib >/dev/null
fi
VERSION=$(ls /usr/lib/postgresql | sort -n | tail -1)
BIN=/usr/lib/postgresql/$VERSION/bin
DIR=$(mktemp -d)
chown postgres "$DIR"
PORT=55432
su postgres -c "$BIN/initdb -D $DIR/data -A trust >/dev/null"
su postgres -c "$BIN/pg_ctl -D $DIR/data -o '-p $PORT -c synchronous_commit=on -c fsync=on -c max_connections=200' -l $DIR/log start -w >/dev/null"
trap 'su postgres -c "$BIN/pg_ctl -D $DIR/data stop -m fast >/dev/null"; rm -rf "$DIR"' EXIT
URL="postgres://postgres@127.0.0.1:$PORT/postgres"
psql "$URL" -At -c "select version()" -c "show synchronous_commit" -c "show fsync" -c "show wal_sync_method" \
  | paste -sd ' ' | sed 's/^/postgresql: /'
cargo bench --bench topups -- --with-pg "$URL" --seconds "$SECONDS_EACH"
