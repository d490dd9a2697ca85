#!/usr/bin/env bash
# Ingest benchmark (issue 3): `cvm-etl ingest` on a generated drop of ~10 million
# records vs the same consolidation written as plain DuckDB SQL
# (ops/bench/ingest_duckdb.py, threads=2). See ops/bench/README.md.
#
#   ops/bench/ingest.sh
#
# Environment:
#   CVM_BENCH_DIR      where the drop and the warehouses go (default ~/.cache/cvm-bench)
#   CUSTOMERS SEED DIRTY   generate parameters (default 900000 7 0.001: ~10.0M records, ~1 GB)
#   CARGO_TARGET_DIR   (default ~/.cache/cvm-target)
#   DUCKDB_THREADS     (default 2)
#   BENCH_PYTHON       a python with duckdb; default: ops/bench/.venv (created with
#                      `python3 -m venv` and `pip install duckdb` on first use)
set -euo pipefail
customers="${CUSTOMERS:-900000}"
seed="${SEED:-7}"
dirty="${DIRTY:-0.001}"
threads="${DUCKDB_THREADS:-2}"
source "$(dirname "$0")/common.sh"
bench_setup
bench_binary ingest
bench_python "duckdb" duckdb

# The drop: generated once per parameter set, reused afterwards.
drop="$bench/drop-$customers-$seed-$dirty"
bench_generated "$drop" --customers "$customers" --seed "$seed" --dirty-ratio "$dirty"
echo "== drop $drop: $(du -sh "$drop" | cut -f1), $(find "$drop" -type f ! -name .generated | wc -l) files"

# cvm-etl ingest into a fresh warehouse.
wh="$bench/wh-ingest"
rm -rf "$wh"
sync
echo "== load before cvm: $(uptime | sed 's/.*load average: //')"
/usr/bin/time -f '%e %M %U %S' -o "$bench/cvm.time" "$bin" -q ingest --input "$drop" --warehouse "$wh"
read -r cvm_s cvm_kb cvm_u cvm_sys <"$bench/cvm.time"
manifest="$(ls "$wh"/runs/*/manifest.json | head -1)"
read -r records cvm_detail < <("$py" - "$manifest" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
t, w = m["totals"], m["warehouse"]
print(t["records"], json.dumps({"accepted": t["accepted"], "duplicate": t["duplicate"],
      "ignored": t["ignored"], "anonymous": t["anonymous"], "rejected": t["rejected"],
      "rejected_by_reason": t["rejected_by_reason"], "customers": w["customers"],
      "guests": w["guests"], "transactions": w["transactions"], "events": w["events"],
      "timings_ms": m["timings_ms"]}))
EOF
)
echo "cvm: $cvm_detail"

# The same consolidation in DuckDB SQL.
out="$bench/wh-duckdb"
sync
echo "== load before duckdb: $(uptime | sed 's/.*load average: //')"
/usr/bin/time -f '%e %M %U %S' -o "$bench/duckdb.time" "$py" ops/bench/ingest_duckdb.py \
  --input "$drop" --out "$out" --threads "$threads" | tee "$bench/duckdb.json"
read -r dd_s dd_kb dd_u dd_sys <"$bench/duckdb.time"
echo "== load after: $(uptime | sed 's/.*load average: //')"

awk -v cu="$cvm_u" -v csy="$cvm_sys" -v du="$dd_u" -v dsy="$dd_sys" -v r="$records" -v cs="$cvm_s" -v ck="$cvm_kb" -v ds="$dd_s" -v dk="$dd_kb" -v th="$threads" 'BEGIN {
  print "== summary (ingest)"
  printf "records            %d\n", r
  printf "cvm seconds        %.2f  (cpu user+sys %.1f s)\n", cs, cu + csy
  printf "cvm records/s      %.0f\n", r / cs
  printf "cvm peak RSS MiB   %.0f\n", ck / 1024
  printf "duckdb seconds     %.2f  (threads=%d; cpu user+sys %.1f s)\n", ds, th, du + dsy
  printf "duckdb peak RSS MiB %.0f\n", dk / 1024
  printf "ratio cvm/duckdb   %.3f\n", cs / ds
}'
