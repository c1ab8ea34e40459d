#!/usr/bin/env bash
# The same master-account debit in PostgreSQL, for comparison with
# benches/topups.rs: UPDATE ... SET balance = balance - $1 WHERE id = $2 AND
# balance >= $1, plus a journal INSERT, in one transaction, synchronous
# commit, 64 clients, 1 merchant (hot row) and 100 merchants.
# Installs and starts PostgreSQL itself (Debian's package), in a temp cluster.
set -euo pipefail
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
PSQL="psql -h 127.0.0.1 -p $PORT -U postgres -q"
$PSQL -c "create table merchant (id int primary key, balance bigint not null);
          create table journal (id bigserial primary key, merchant int not null, amount bigint not null, at timestamptz default now());
          insert into merchant select g, 1000000000000 from generate_series(1, 100) g;"
cat > "$DIR/debit.sql" <<'SQL'
\set m random(1, :merchants)
BEGIN;
UPDATE merchant SET balance = balance - 1025 WHERE id = :m AND balance >= 1025;
INSERT INTO journal (merchant, amount) VALUES (:m, -1025);
COMMIT;
SQL
for merchants in 1 100; do
  printf "postgresql debit + journal, %3d merchant(s): " "$merchants"
  pgbench -h 127.0.0.1 -p $PORT -U postgres -n -c 64 -j 2 -T "$SECONDS_EACH" -D merchants="$merchants" -f "$DIR/debit.sql" postgres 2>/dev/null \
    | awk '/^tps/ {tps=$3} /latency average/ {lat=$4} END {printf "%.0f tps  (mean latency %s ms)\n", tps, lat}'
done
