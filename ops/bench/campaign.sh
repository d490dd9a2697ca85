#!/usr/bin/env bash
# Campaign sender benchmark: one campaign of MESSAGES recipients sent by
# `cvm-portal serve` through its outbox to a real SMTP server on loopback
# (tests/smtp/sink.py, aiosmtpd, counting only), on the embedded SQLite
# database. Reports the sending rate (from the first to the last message the
# server accepted, from the outbox's sent_at), what the server counted, and
# the portal's peak memory. See ops/bench/README.md.
#
#   ops/bench/campaign.sh                         # 100,000 messages, rate limit off
#   MESSAGES=30000 RATE=500 ops/bench/campaign.sh # the limit holds
#
# Builds nothing: takes cvm-portal from CVM_BIN_DIR, so build first
# (`cargo build --release -p cvm-portal`). Installs jq, sqlite3 and curl with
# apt-get when missing; aiosmtpd in ops/bench/.venv (or BENCH_PYTHON).
#
# Environment:
#   MESSAGES      recipients (default 100000)
#   RATE          CVM_SEND_RATE, messages per second, 0 = unlimited (default 0)
#   CONCURRENCY   CVM_SEND_CONCURRENCY (default 16)
#   PORT          loopback port of the portal (default 18081)
#   KEEP          set to keep the work folder
set -euo pipefail
messages="${MESSAGES:-100000}"
rate="${RATE:-0}"
concurrency="${CONCURRENCY:-16}"
port="${PORT:-18081}"
source "$(dirname "$0")/common.sh"
bench_setup
bench_python aiosmtpd aiosmtpd
git diff --quiet HEAD -- portal 2>/dev/null || echo "== note: uncommitted changes in portal/"

bin_dir="${CVM_BIN_DIR:-$CARGO_TARGET_DIR/release}"
if [ ! -x "$bin_dir/cvm-portal" ]; then
  echo "error: $bin_dir/cvm-portal not found; build it first: cargo build --release -p cvm-portal" >&2
  exit 1
fi
bench_need jq jq
bench_need sqlite3 sqlite3
bench_need curl curl

bench_workdir campaign

cp "$bin_dir/cvm-portal" "$work/"
portal="$work/cvm-portal"
unset CVM_CONFIG CVM_DATABASE_URL CVM_PORTAL_BIND CVM_PORTAL_PUBLIC_URL CVM_PORTAL_SECRET CVM_SMTP_URL
dbfile="$work/cvm.db"
db="sqlite://$dbfile"
url="http://127.0.0.1:$port"

token="$("$portal" --quiet token create --name bench --role marketer --db "$db" | tail -n 1)"
echo "== $messages customers, each consenting, at a distinct address"
sqlite3 "$dbfile" <<SQL
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $messages)
INSERT INTO customers (customer_id, is_guest, email, first_name, email_opt_in, channels, active, loaded_at)
SELECT printf('b%07d', i), 0, printf('b%07d@bench.example', i), 'Ann', 1, 'web', 1, '2026-01-01 00:00:00' FROM n;
SQL

"$py" tests/smtp/sink.py --dir "$work/sink" --count-only >"$work/sink.out" &
sink_pid=$!
bench_pids+=("$sink_pid")
for _ in $(seq 100); do grep -q ready "$work/sink.out" 2>/dev/null && break; sleep 0.1; done
smtp_port="$(sed -n 's/^ready //p' "$work/sink.out")"
[ -n "$smtp_port" ] || { echo "error: the SMTP sink did not start" >&2; exit 1; }

echo "== cvm-portal serve on $url; SMTP 127.0.0.1:$smtp_port; rate $rate/s (0 = unlimited), concurrency $concurrency"
CVM_DATABASE_URL="$db" \
  CVM_PORTAL_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  CVM_PORTAL_BIND="127.0.0.1:$port" \
  CVM_PORTAL_PUBLIC_URL="https://shop.example" \
  CVM_SMTP_URL="smtp://127.0.0.1:$smtp_port?tls=none" \
  CVM_MAIL_FROM="Bench Shop <news@bench.example>" \
  CVM_SEND_RATE="$rate" \
  CVM_SEND_CONCURRENCY="$concurrency" \
  CVM_LOG=warn \
  "$portal" serve >"$work/portal.log" 2>&1 &
server_pid=$!
bench_pids+=("$server_pid")
for _ in $(seq 600); do
  curl -fs "$url/healthz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { echo "error: cvm-portal serve exited" >&2; exit 1; }
  sleep 0.1
done


id="$(bench_gql 'mutation { createCampaign(input: {name: "bench", audience: {},
  subject: "Hello {{ customer.first_name }}", textTemplate: "Hi {{ customer.first_name }}, {{ unsubscribe_url }}",
  htmlTemplate: "<p>Hi {{ customer.first_name }}</p>"}) { id } }' | jq -r .createCampaign.id)"
t0="$(date +%s.%N)"
bench_gql 'mutation($id: ID!) { sendCampaign(id: $id) { status } }' "$(jq -nc --arg id "$id" '{id: $id}')" >/dev/null
t1="$(date +%s.%N)"
echo "== audience frozen in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
while :; do
  state="$(bench_gql 'query($id: ID!) { campaign(id: $id) { status stats { sent queued failed inDoubt } } }' \
    "$(jq -nc --arg id "$id" '{id: $id}')")"
  [ "$(jq -r .campaign.status <<<"$state")" = SENT ] && break
  kill -0 "$server_pid" 2>/dev/null || { echo "error: cvm-portal serve exited" >&2; exit 1; }
  sleep 1
done
echo "== final: $(jq -c .campaign.stats <<<"$state")"
peak_kb="$(awk '/VmHWM/ { print $2 }' "/proc/$server_pid/status")"
kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null || true
kill -TERM "$sink_pid"; wait "$sink_pid" 2>/dev/null || true
bench_pids=()
accepted="$(cat "$work/sink/count")"
read -r sent seconds <<<"$(sqlite3 -separator ' ' "$dbfile" \
  "SELECT count(*), (julianday(max(sent_at)) - julianday(min(sent_at))) * 86400 FROM outbox WHERE campaign_id = $id AND status = 'sent';")"
measured="$(awk -v n="$sent" -v s="$seconds" 'BEGIN { printf "%.0f", (n - 1) / s }')"
echo "BENCH messages=$sent accepted_by_server=$accepted seconds=$(printf '%.2f' "$seconds") rate=${measured}/s limit=${rate}/s concurrency=$concurrency portal_peak_rss=$((peak_kb / 1024))MiB"
if [ "$rate" != 0 ]; then
  awk -v m="$measured" -v r="$rate" 'BEGIN { d = (m - r) / r * 100; printf "== measured rate is %+.1f%% of the limit\n", d }'
fi
[ "$accepted" -eq "$sent" ] || { echo "error: the server accepted $accepted messages, the outbox says $sent" >&2; exit 1; }
