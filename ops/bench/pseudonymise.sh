#!/usr/bin/env bash
# What `warehouse.pseudonymise` costs ingest (privacy issue): every email,
# phone and name is hashed with CVM_PRIVACY_KEY (HMAC-SHA-256) as it is
# parsed, and the clear values are written to the vault. The same generated
# drop into an empty warehouse, plain and pseudonymised, alternating, three
# runs each; then the sizes of the warehouse and of its vault.
#
#   ops/bench/pseudonymise.sh
#
# Environment:
#   CVM_BENCH_DIR     where the drop and the warehouses go (default ~/.cache/cvm-bench)
#   CUSTOMERS SEED    generate parameters (default 900000 7: ~10M records)
#   CARGO_TARGET_DIR  (default ~/.cache/cvm-target)
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_privacy_setup pseudonymise
for run in 1 2 3; do
  for mode in false true; do
    wh="$bench/wh-pseudonymise-$mode"
    rm -rf "$wh"
    sync
    CVM_PSEUDONYMISE=$mode /usr/bin/time -f '%e %M' -o "$bench/pseudonymise.time" \
      "$bin" -q ingest --input "$drop" --warehouse "$wh"
    read -r s kb <"$bench/pseudonymise.time"
    echo "run $run, pseudonymise $mode: $s s, peak RSS $((kb / 1024)) MiB"
  done
done
for mode in false true; do
  wh="$bench/wh-pseudonymise-$mode"
  echo "pseudonymise $mode: version $(du -sh "$wh/current/" | cut -f1)," \
    "vault $(du -sh "$wh/_privacy/vault" 2>/dev/null | cut -f1 || echo none)"
done
