#!/usr/bin/env bash
# Benchmark of `cvm-etl load`: 1 million customers with scores (default) into
# a fresh SQLite file and a fresh PostgreSQL database, each loaded twice (the
# first load inserts, the second updates every row). Release build.
#
#   ops/bench/load.sh [CUSTOMERS]
#   CVM_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432 (default) names the server;
#   CVM_BENCH_DB=cvm_bench (default) the database it creates and drops (another
#   name lets two people benchmark on one server).
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-1000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cvm-target}"
pg="${CVM_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}"
db="${CVM_BENCH_DB:-cvm_bench}"
work="$(mktemp -d)"
trap 'rm -rf "$work"; psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
cargo build --release --locked -p cvm-etl --example load_bench
echo "== $n customers; $(nproc) cores; $(uname -m); $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- etl shared || echo +dirty)"
uptime
"$CARGO_TARGET_DIR/release/examples/load_bench" --customers "$n" --warehouse "$work/wh" \
  "sqlite://$work/cvm.db" "$pg/$db"
