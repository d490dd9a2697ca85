#!/usr/bin/env bash
# A long history delivered as several drops (issue 13): generates CUSTOMERS
# customers' two-year history plus one day (`cvm-etl generate --days 1`),
# splits the history into DROPS drops (each channel's part files dealt out in
# turn, the CRM file cut into as many slices of lines), ingests them one
# after the other into one warehouse, then the day over the whole history,
# and scores it. Prints per drop the records, ingest wall time and peak RSS,
# and the warehouse size. See ops/bench/README.md.
#
#   ops/bench/history.sh
#
# Environment:
#   CVM_BENCH_DIR      where the drops and the warehouse go (default ~/.cache/cvm-bench)
#   CUSTOMERS SEED     generator parameters (default 9000000 5: about 100M records)
#   DROPS              how many drops the history is delivered in (default 10)
#   CARGO_TARGET_DIR   (default ~/.cache/cvm-target)
set -euo pipefail
customers="${CUSTOMERS:-9000000}"
seed="${SEED:-5}"
drops="${DROPS:-10}"
source "$(dirname "$0")/common.sh"
bench_setup
bench_binary history

gen="$bench/history-$customers-$seed"
bench_generated "$gen" --customers "$customers" --seed "$seed" --days 1
day="$(cd "$gen" && ls -d ????-??-?? | head -n 1)"

# The history's files dealt out into $drops drops (hard links, no copies).
split="$bench/history-$customers-$seed-split$drops"
if [ ! -f "$split/.done" ]; then
  rm -rf "$split"
  for ((i = 0; i < drops; i++)); do mkdir -p "$split/$i"; done
  (cd "$gen/history" && find . -type f ! -path './crm/*' ! -path './fx/*' | sort) | {
    i=0
    while read -r f; do
      d="$split/$((i % drops))/$(dirname "$f")"
      mkdir -p "$d" && ln "$gen/history/$f" "$d/"
      i=$((i + 1))
    done
  }
  for ((i = 0; i < drops; i++)); do
    mkdir -p "$split/$i/fx" && ln "$gen/history/fx/rates.csv" "$split/$i/fx/rates.csv"
  done
  # The CRM file in $drops slices of whole lines, each with the header.
  crm="$gen/history/crm/customers.csv"
  lines=$(($(wc -l <"$crm") - 1))
  per=$(((lines + drops - 1) / drops))
  for ((i = 0; i < drops; i++)); do
    mkdir -p "$split/$i/crm"
    awk -v from=$((i * per + 1)) -v to=$(((i + 1) * per)) 'NR == 1 || (NR - 1 >= from && NR - 1 <= to)' \
      "$crm" >"$split/$i/crm/customers.csv"
  done
  touch "$split/.done"
fi

records_of() { find "$1" -type f ! -name .generated -exec cat {} + | grep -c .; }

wh="$bench/wh-history"
rm -rf "$wh"
printf '%-8s %11s %9s %9s %12s\n' drop records ingest_s rss_MiB warehouse_MB
total=0
prev_kb=0
last_kb=0
mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
for ((i = 0; i < drops; i++)); do
  # Each drop has so far needed a fixed amount more than the one before:
  # stop before one that would not fit in 90% of this machine's memory.
  next_kb=$((last_kb + (last_kb - prev_kb)))
  if [ "$i" -ge 2 ] && [ "$next_kb" -gt $((mem_kb * 9 / 10)) ]; then
    echo "stopped before drop $i: it would need ~$((next_kb / 1024)) MiB of $((mem_kb / 1024)) MiB"
    exit 0
  fi
  /usr/bin/time -f '%e %M' -o "$bench/history.time" "$bin" -q ingest --input "$split/$i" --warehouse "$wh"
  read -r s kb <"$bench/history.time"
  prev_kb=$last_kb
  last_kb=$kb
  n=$(records_of "$split/$i")
  total=$((total + n))
  printf '%-8s %11d %9.2f %9.0f %12.1f\n' "$i" "$n" "$s" "$((kb / 1024))" \
    "$(echo "$(du -sb "$wh" | cut -f1) / 1000000" | bc -l)"
done
echo "history: $total records in $drops drops"
/usr/bin/time -f '%e %M' -o "$bench/history.time" "$bin" -q ingest --input "$gen/$day" --warehouse "$wh"
read -r s kb <"$bench/history.time"
printf '%-8s %11d %9.2f %9.0f   (a night over the whole history)\n' "$day" "$(records_of "$gen/$day")" "$s" "$((kb / 1024))"
/usr/bin/time -f '%e %M' -o "$bench/history.time" "$bin" -q score --warehouse "$wh" --as-of "$day"
read -r s kb <"$bench/history.time"
echo "score --as-of $day: $s s, peak RSS $((kb / 1024)) MiB"
