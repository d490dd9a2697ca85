#!/usr/bin/env bash
# Nightly benchmark (issue 13): what one night costs over a long history.
# Generates a history plus DAYS daily drops (`cvm-etl generate --days`),
# ingests the history, then each daily drop night by night with a score
# after each; then ingests the whole history again as one drop into a fresh
# warehouse (the full rebuild the nightly is compared with). Prints, per
# night: ingest wall time and peak RSS, score wall time, the bytes of its new
# version that no earlier version shares (today a night writes every file,
# then replaces each one identical to the previous version's with a hard
# link: the disk a night adds) and the warehouse size; and the ratios of a
# night to the full rebuild. Finally checks that the nightly warehouse
# equals the rebuilt one (ops/bench/checksums.py).
#
#   ops/bench/nightly.sh
#
# Environment:
#   CVM_BENCH_DIR   where drops and warehouses go (default ~/.cache/cvm-bench)
#   CUSTOMERS SEED DAYS   generate parameters (default 900000 7 7: ~10M records
#                   of history; a generated night holds what that population
#                   makes in one day, about 1/730 of the history)
#   CARGO_TARGET_DIR   (default ~/.cache/cvm-target)
set -euo pipefail
customers="${CUSTOMERS:-900000}"
seed="${SEED:-7}"
days="${DAYS:-7}"
source "$(dirname "$0")/common.sh"
bench_setup
bench_binary nightly
bench_python "duckdb" duckdb

drops="$bench/nightly-$customers-$seed-$days"
bench_generated "$drops" --customers "$customers" --seed "$seed" --days "$days"
mapfile -t nights < <(echo history; cd "$drops" && ls -d ????-??-?? | head -n "$days")
as_of_of() { if [ "$1" = history ]; then date -d "${nights[1]} -1 day" +%F; else echo "$1"; fi; }

# Bytes of the files a version holds that no earlier version shares.
new_bytes() {
  find "$1" -type f -links 1 -printf '%s\n' | awk '{s += $1} END {print s + 0}'
}

wh="$bench/wh-nightly"
rm -rf "$wh"
printf '%-11s %9s %9s %10s %9s %12s %12s\n' night records ingest_s rss_MiB score_s new_MB warehouse_MB
for n in "${nights[@]}"; do
  /usr/bin/time -f '%e %M' -o "$bench/night.time" "$bin" -q ingest --input "$drops/$n" --warehouse "$wh"
  read -r in_s in_kb <"$bench/night.time"
  /usr/bin/time -f '%e %M' -o "$bench/score.time" "$bin" -q score --warehouse "$wh" --as-of "$(as_of_of "$n")"
  read -r sc_s _ <"$bench/score.time"
  records=$(find "$drops/$n" -type f ! -name .generated -exec cat {} + | grep -c .)
  version="$(readlink -f "$wh/current")"
  written=$(new_bytes "$version")
  total=$(du -sb "$wh" | cut -f1)
  printf '%-11s %9d %9.2f %10.0f %9.2f %12.1f %12.1f\n' "$n" "$records" "$in_s" "$((in_kb / 1024))" "$sc_s" \
    "$(echo "$written / 1000000" | bc -l)" "$(echo "$total / 1000000" | bc -l)"
  [ "$n" = history ] || { echo "$in_s $in_kb $written" >>"$bench/nights.txt.tmp"; }
done
mv "$bench/nights.txt.tmp" "$bench/nights.txt"

# The full rebuild: every night's files as one drop into a fresh warehouse
# (file names prefixed with the night's number, so the history is read first).
flat="$bench/nightly-flat"
rm -rf "$flat" && mkdir -p "$flat"
i=0
for n in "${nights[@]}"; do
  # The rates are the same in every drop, and a drop has one fx/rates.csv.
  while read -r f; do
    mkdir -p "$flat/$(dirname "$f")"
    ln "$drops/$n/$f" "$flat/$(dirname "$f")/$(printf %02d $i)-$n-$(basename "$f")"
  done < <(cd "$drops/$n" && find . -type f ! -name .generated ! -path './fx/*')
  [ -e "$flat/fx/rates.csv" ] || { mkdir -p "$flat/fx" && ln "$drops/$n/fx/rates.csv" "$flat/fx/rates.csv"; }
  i=$((i + 1))
done
rebuild="$bench/wh-rebuild"
rm -rf "$rebuild"
/usr/bin/time -f '%e %M' -o "$bench/rebuild.time" "$bin" -q ingest --input "$flat" --warehouse "$rebuild"
read -r rb_s rb_kb <"$bench/rebuild.time"
rb_total=$(du -sb "$rebuild" | cut -f1)
echo "full rebuild: ingest ${rb_s} s, peak RSS $((rb_kb / 1024)) MiB, warehouse $((rb_total / 1000000)) MB"
awk -v rs="$rb_s" -v rk="$rb_kb" -v rt="$rb_total" '{
  printf "night %d: ingest time %.3f of the rebuild, peak RSS %.3f, new (unshared) bytes %.4f of the warehouse\n", NR, $1 / rs, $2 / rk, $3 / rt
}' "$bench/nights.txt"

echo "== nightly warehouse vs full rebuild"
# Source file names differ by design (the rebuild's are prefixed); the rebuild is not scored.
"$py" ops/bench/checksums.py --exclude source_file --no-scores "$wh" "$rebuild"
