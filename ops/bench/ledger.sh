#!/usr/bin/env bash
# What the erasure ledger costs ingest (privacy issue): once anyone was
# erased, every record's keys are hashed with CVM_PRIVACY_KEY (HMAC-SHA-256)
# and looked up in the ledger. The same generated drop into an empty
# warehouse, without a ledger and with one, alternating, three runs each.
#
#   ops/bench/ledger.sh
#
# Environment:
#   CVM_BENCH_DIR     where the drop and the warehouses go (default ~/.cache/cvm-bench)
#   CUSTOMERS SEED    generate parameters (default 900000 7: ~10M records)
#   CARGO_TARGET_DIR  (default ~/.cache/cvm-target)
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_privacy_setup ledger
wh="$bench/wh-ledger"
for run in 1 2 3; do
  for mode in none ledger; do
    rm -rf "$wh"
    if [ "$mode" = ledger ]; then
      # One erased person (a hash nobody's key has): every record is checked.
      mkdir -p "$wh/_privacy"
      echo '{"version":1,"erasures":{"erased-bench":[{"kind":"email","hash":"00000000000000000000000000000000"}]}}' \
        >"$wh/_privacy/erasure_ledger.json"
    fi
    sync
    /usr/bin/time -f '%e %M' -o "$bench/ledger.time" "$bin" -q ingest --input "$drop" --warehouse "$wh"
    read -r s kb <"$bench/ledger.time"
    echo "run $run, ledger $mode: $s s, peak RSS $((kb / 1024)) MiB"
  done
done
