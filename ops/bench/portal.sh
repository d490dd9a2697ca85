#!/usr/bin/env bash
# Portal load benchmark: customers' answers (`submitFeedback`, each request a
# different invitation) and a staff listing (`customers(first: 100)` with
# scores), driven by wrk from a second process over loopback against
# `cvm-portal serve` on the embedded SQLite database. See ops/bench/README.md.
#
#   ops/bench/portal.sh
#
# Builds nothing: takes cvm-etl and cvm-portal from CVM_BIN_DIR, so build first
# (`cargo build --release -p cvm-etl -p cvm-portal`). Installs wrk, jq and
# sqlite3 with apt-get when missing.
#
# Environment:
#   CVM_BIN_DIR        folder of the binaries (default $CARGO_TARGET_DIR/release)
#   CARGO_TARGET_DIR   (default ~/.cache/cvm-target)
#   CUSTOMERS          demo customers, each invited once (default 50000); must exceed
#                      the answers one run can send, else tokens are reused (warned)
#   DURATION           seconds of each wrk run (default 15)
#   PORT               loopback port of the portal (default 18080)
#   RATE               answers per second to offer, paced by a think time per
#                      connection (default 0: as fast as the server answers)
#   KEEP               set to keep the work folder (database, logs, scripts)
set -euo pipefail
customers="${CUSTOMERS:-50000}"
duration="${DURATION:-15}"
port="${PORT:-18080}"
threads=2
connections=64
# RATE: answers per second for the whole run (paced; 0 = as fast as possible).
rate="${RATE:-0}"
pause_ms="$(awk -v c="$connections" -v r="$rate" 'BEGIN { if (r > 0) printf "%.3f", c * 1000 / r; else print 0 }')"
source "$(dirname "$0")/common.sh"
bench_setup
git diff --quiet HEAD -- portal 2>/dev/null || echo "== note: uncommitted changes in portal/"

bin_dir="${CVM_BIN_DIR:-$CARGO_TARGET_DIR/release}"
for b in cvm-etl cvm-portal; do
  if [ ! -x "$bin_dir/$b" ]; then
    echo "error: $bin_dir/$b not found; build it first:" >&2
    echo "  cargo build --release -p cvm-etl -p cvm-portal   (or set CVM_BIN_DIR)" >&2
    exit 1
  fi
done

bench_need wrk wrk
bench_need jq jq
bench_need sqlite3 sqlite3
bench_need curl curl

bench_workdir portal

# Private copies, so a concurrent build cannot swap the binaries mid-run.
cp "$bin_dir/cvm-etl" "$bin_dir/cvm-portal" "$work/"
etl="$work/cvm-etl"
portal="$work/cvm-portal"
# Nothing from the caller's configuration: the run is defined by this script.
unset CVM_CONFIG CVM_DATABASE_URL CVM_PORTAL_BIND CVM_PORTAL_PUBLIC_URL CVM_PORTAL_SECRET CVM_PORTAL_RATE_LIMIT
db="sqlite://$work/demo/cvm.db"
url="http://127.0.0.1:$port"

echo "== demo database: $customers customers (load: $(uptime | sed 's/.*load average: //'))"
"$etl" --quiet demo --dir "$work/demo" --customers "$customers"
token="$("$portal" --quiet token create --name bench --role marketer --db "$db" | tail -n 1)"

echo "== cvm-portal serve on $url"
# Rate limit off: every request comes from one client IP, which the public
# routes would otherwise hold to 20/s. Access log on, as in production (to a file).
CVM_DATABASE_URL="$db" \
  CVM_PORTAL_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  CVM_PORTAL_BIND="127.0.0.1:$port" \
  CVM_PORTAL_RATE_LIMIT=0 \
  CVM_PORTAL_PUBLIC_URL="$url" \
  "$portal" serve >"$work/portal.log" 2>&1 &
server_pid=$!
bench_pids+=("$server_pid")
for _ in $(seq 600); do
  curl -fs "$url/healthz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { echo "error: cvm-portal serve exited" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$url/healthz" >/dev/null


echo "== survey and invitations"
survey="$(bench_gql 'mutation { createSurvey(input: {name: "bench", question: "How likely are you to recommend us?"}) { id } }' |
  jq -r .createSurvey.id)"
# active: null invites every customer, inactive ones included.
bench_gql 'mutation($s: ID!) { createInvitations(surveyId: $s, filter: {active: null}) { created alreadyInvited } }' \
  "$(jq -nc --arg s "$survey" '{s: $s}')" | jq -c .createInvitations
: >"$work/tokens.txt"
cursor=null
while :; do
  page="$(bench_gql 'query($id: ID!, $c: String) { survey(id: $id) { invitations(first: 500, after: $c) {
      pageInfo { hasNextPage endCursor } edges { node { url } } } } }' \
    "$(jq -nc --arg id "$survey" --argjson c "$cursor" '{id: $id, c: $c}')")"
  jq -r '.survey.invitations.edges[].node.url | sub("^.*/s/"; "")' <<<"$page" >>"$work/tokens.txt"
  [ "$(jq -r .survey.invitations.pageInfo.hasNextPage <<<"$page")" = true ] || break
  cursor="$(jq -c .survey.invitations.pageInfo.endCursor <<<"$page")"
done
ntokens="$(wc -l <"$work/tokens.txt")"
# Tokens go into the JSON bodies as they are: they must need no escaping.
if grep -qv '^[A-Za-z0-9._~-]\+$' "$work/tokens.txt"; then
  echo "error: unexpected characters in an invitation token" >&2
  exit 1
fi
[ "$(sort -u "$work/tokens.txt" | wc -l)" -eq "$ntokens" ] || { echo "error: repeated invitation tokens" >&2; exit 1; }
echo "$ntokens invitation tokens"
[ "$ntokens" -ge 100 ] || { echo "error: $ntokens invitations: too few to benchmark (CUSTOMERS)" >&2; exit 1; }

# Counting shared by both wrk scripts: response() runs in each thread, done()
# in the setup environment, which reads the threads' counters.
cat >"$work/count.lua" <<'LUA'
local threads = {}
ok, non200, errors = 0, 0, 0
function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end
function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  elseif body:find('"errors"', 1, true) then
    errors = errors + 1
  else
    ok = ok + 1
  end
end
function done(summary, latency, requests)
  local t = {ok = 0, non200 = 0, errors = 0, sent = 0, wrapped = 0}
  for _, th in ipairs(threads) do
    for k in pairs(t) do t[k] = t[k] + (th:get(k) or 0) end
  end
  io.write(string.format("BENCH ok=%d non200=%d errors=%d sent=%d wrapped=%d seconds=%.3f timeouts=%d\n",
    t.ok, t.non200, t.errors, t.sent, t.wrapped, summary.duration / 1e6, summary.errors.timeout))
end
LUA

# Answers: thread i of N takes the i-th slice of the tokens, so no two
# requests of the run share an invitation until a slice runs out (then it
# starts over: resubmissions, counted in `wrapped`).
{
  printf 'local tokens_file, nthreads = "%s", %d\n' "$work/tokens.txt" "$threads"
  printf 'local pause_ms = %s\n' "$pause_ms"
  cat "$work/count.lua"
  cat <<'LUA'
local reqs, next_req = {}, 1
sent, wrapped = 0, 0
function init(args)
  local all = {}
  for line in io.lines(tokens_file) do all[#all + 1] = line end
  local per = math.floor(#all / nthreads)
  local first = (id - 1) * per + 1
  local headers = {["Content-Type"] = "application/json"}
  -- Pre-built requests: building one per call would cost wrk more than the server.
  for i = first, first + per - 1 do
    local body = '{"query":"mutation($t:String!){submitFeedback(input:{token:$t,score:9}){updated}}",'
      .. '"variables":{"t":"' .. all[i] .. '"}}'
    reqs[#reqs + 1] = wrk.format("POST", "/graphql", headers, body)
  end
end
-- Paced mode (RATE): each connection waits about connections/RATE seconds
-- between its requests (jittered so they do not move in step).
if pause_ms > 0 then
  function delay()
    return pause_ms * (0.5 + math.random())
  end
end
function request()
  if next_req > #reqs then
    next_req = 1
  end
  if sent >= #reqs then
    wrapped = wrapped + 1
  end
  local r = reqs[next_req]
  next_req = next_req + 1
  sent = sent + 1
  return r
end
LUA
} >"$work/answers.lua"

{
  printf 'local auth = "Bearer %s"\n' "$token"
  cat "$work/count.lua"
  cat <<'LUA'
sent, wrapped = 0, 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = auth
wrk.body = '{"query":"{ customers(first: 100) { edges { node { id score { clv12m churnRisk rfmSegment } } } } }"}'
LUA
} >"$work/customers.lua"

# run_wrk NAME SCRIPT: wrk's report to the screen and $work/NAME.out. A 30 s
# timeout keeps slow requests in the latency figures (wrk leaves timed-out
# requests out of them).
run_wrk() {
  echo "== wrk $1: -t$threads -c$connections -d${duration}s (load: $(uptime | sed 's/.*load average: //'))"
  wrk -t"$threads" -c"$connections" -d"${duration}s" --timeout 30s --latency -s "$2" "$url/graphql" | tee "$work/$1.out"
}
# field NAME KEY: a value of wrk's BENCH line.
field() { sed -n "s/^BENCH .*\<$2=\([0-9.]*\).*/\1/p" "$work/$1.out"; }
# pct NAME P: wrk's P% latency in ms.
pct() {
  awk -v p="$2%" '$1 == p {
    v = $2; u = v; sub(/[0-9.]+/, "", u); v += 0
    if (u == "us") v /= 1000; else if (u == "s") v *= 1000; else if (u == "m") v *= 60000
    printf "%.2f", v; exit }' "$work/$1.out"
}

run_wrk answers "$work/answers.lua"
rows="$(sqlite3 -cmd '.timeout 30000' "$work/demo/cvm.db" 'SELECT count(*) FROM answers')"
run_wrk customers "$work/customers.lua"

a_ok="$(field answers ok)"
a_bad=$(($(field answers non200) + $(field answers errors)))
a_wrapped="$(field answers wrapped)"
a_sent="$(field answers sent)"
c_ok="$(field customers ok)"
c_bad=$(($(field customers non200) + $(field customers errors)))
echo "== load after: $(uptime | sed 's/.*load average: //')"
awk -v n="$ntokens" -v ok="$a_ok" -v bad="$a_bad" -v s="$(field answers seconds)" -v rows="$rows" \
  -v a50="$(pct answers 50)" -v a99="$(pct answers 99)" -v w="$a_wrapped" \
  -v cok="$c_ok" -v cbad="$c_bad" -v cs="$(field customers seconds)" \
  -v c50="$(pct customers 50)" -v c99="$(pct customers 99)" -v t="$threads" -v c="$connections" 'BEGIN {
  print "== summary (portal, SQLite)"
  printf "connections              %d (%d wrk threads)\n", c, t
  printf "invitations              %d\n", n
  printf "answers ok               %d  (failed %d, token reuses %d)\n", ok, bad, w
  printf "answers/s                %.0f\n", ok / s
  printf "answers p50 / p99 ms     %s / %s\n", a50, a99
  printf "answers rows counted     %d\n", rows
  printf "customers(first:100) ok  %d  (failed %d)\n", cok, cbad
  printf "customers queries/s      %.0f\n", cok / cs
  printf "customers p50 / p99 ms   %s / %s\n", c50, c99
}'

status=0
if [ "$a_wrapped" -gt 0 ]; then
  echo "warning: $a_sent answers sent for $ntokens invitations: $a_wrapped were resubmissions" \
    "(updates, not new rows); raise CUSTOMERS" >&2
fi
# Each acknowledged answer is a row (resubmissions excepted); requests still in
# flight when wrk stopped may add rows beyond that.
if [ "$rows" -lt $((a_ok - a_wrapped)) ]; then
  echo "FAIL: $rows answer rows < $((a_ok - a_wrapped)) acknowledged answers" >&2
  status=1
fi
if [ "$a_ok" -eq 0 ] || [ "$c_ok" -eq 0 ] || [ "$a_bad" -gt 0 ] || [ "$c_bad" -gt 0 ]; then
  echo "FAIL: failed requests (non-200 or GraphQL errors): answers $a_bad, customers $c_bad" >&2
  status=1
fi
exit "$status"
