#!/usr/bin/env bash
# Scoring benchmark (issue 4): `cvm-etl score` on a warehouse of 1 million
# customers and ~12.3 million transactions, and lifetimes' BetaGeoFitter on the
# same (frequency, recency, T). See ops/bench/README.md.
#
#   ops/bench/score.sh
#
# Environment:
#   CVM_BENCH_DIR      where the drop and the warehouse go (default ~/.cache/cvm-bench)
#   CUSTOMERS SEED     make_transactions.py parameters (default 1000000 11)
#   CARGO_TARGET_DIR   (default ~/.cache/cvm-target)
#   BENCH_PYTHON       a python with duckdb, numpy, scipy, lifetimes; default:
#                      ops/bench/.venv (created with `python3 -m venv` and
#                      `pip install duckdb lifetimes pandas` on first use)
set -euo pipefail
customers="${CUSTOMERS:-1000000}"
seed="${SEED:-11}"
source "$(dirname "$0")/common.sh"
bench_setup
bench_binary score
bench_python "duckdb, lifetimes" duckdb lifetimes pandas

# Transactions-only drop, generated once per parameter set.
drop="$bench/tx-$customers-$seed"
if [ ! -f "$drop/.generated" ]; then
  rm -rf "$drop"
  echo "== generating $drop"
  "$py" ops/bench/make_transactions.py --out "$drop" --customers "$customers" --seed "$seed" >"$bench/tx.json.tmp"
  mv "$bench/tx.json.tmp" "$drop/.generated"
fi
cat "$drop/.generated"
as_of="$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["as_of"])' "$drop/.generated")"

# A fresh warehouse (scoring the same date twice would publish nothing the second time).
wh="$bench/wh-score"
rm -rf "$wh"
echo "== ingest $drop (load: $(uptime | sed 's/.*load average: //'))"
/usr/bin/time -f '%e %M' -o "$bench/score-ingest.time" "$bin" -q ingest --input "$drop" --warehouse "$wh"
read -r ing_s ing_kb <"$bench/score-ingest.time"
echo "ingest: ${ing_s} s, peak RSS $((ing_kb / 1024)) MiB"

sync
echo "== score --as-of $as_of (load: $(uptime | sed 's/.*load average: //'))"
/usr/bin/time -f '%e %M %U %S' -o "$bench/score.time" "$bin" -q score --warehouse "$wh" --as-of "$as_of"
read -r sc_s sc_kb sc_u sc_sys <"$bench/score.time"
manifest="$(grep -l '"command": *"score"' "$wh"/runs/*/manifest.json | head -1)"
read -r cust tx fit_ms distinct < <("$py" - "$manifest" "$wh" <<'EOF'
import json, sys, duckdb
m = json.load(open(sys.argv[1]))
bg = m["bgnbd"]
wh = sys.argv[2]
c = duckdb.connect()
cust = c.execute(f"SELECT count(*) FROM read_parquet('{wh}/current/customers/*.parquet')").fetchone()[0]
tx = c.execute(f"SELECT count(*) FROM read_parquet('{wh}/current/transactions/*/*.parquet')").fetchone()[0]
print(cust, tx, bg["fit_ms"], bg["distinct_rows"])
EOF
)
echo "== lifetimes BetaGeoFitter (load: $(uptime | sed 's/.*load average: //'))"
"$py" ops/bench/score_lifetimes.py "$wh/scores/as_of=$as_of/*.parquet" "$manifest" | tee "$bench/lifetimes.out"
lt_s="$(sed -n 's/^RESULT lifetimes_s=\([0-9.]*\).*/\1/p' "$bench/lifetimes.out")"
echo "== load after: $(uptime | sed 's/.*load average: //')"

awk -v su="$sc_u" -v ssy="$sc_sys" -v c="$cust" -v t="$tx" -v s="$sc_s" -v k="$sc_kb" -v f="$fit_ms" -v d="$distinct" -v l="$lt_s" -v a="$as_of" 'BEGIN {
  print "== summary (score)"
  printf "customers                %d\n", c
  printf "transactions             %d\n", t
  printf "as of                    %s\n", a
  printf "score seconds            %.2f  (cpu user+sys %.1f s)\n", s, su + ssy
  printf "score peak RSS MiB       %.0f\n", k / 1024
  printf "BG/NBD fit ms (cvm)      %d  on %d distinct rows\n", f, d
  printf "lifetimes fit seconds    %.3f\n", l
  if (f > 0) printf "ratio lifetimes/cvm fit  %.1f\n", l / (f / 1000); else printf "ratio lifetimes/cvm fit  > %.0f (cvm fit < 1 ms)\n", l / 0.001
}'
