# Shared setup of the benchmark scripts: sourced, not run.
#
#   bench_setup              cd to the repo root; sets root, bench (data folder)
#   bench_binary NAME        release build of cvm-etl, copied to $bench/cvm-etl.NAME -> $bin
#   bench_python MOD PKG...  a python importing MOD (BENCH_PYTHON, else a venv
#                            under ops/bench/.venv with PKG... installed) -> $py
#   bench_generated DIR ARGS...  `cvm-etl generate --out DIR ARGS...`, unless DIR
#                            already holds a drop generated with the same ARGS
#   bench_privacy_setup NAME  the privacy benchmarks' start: bench_setup, bench_binary
#                            NAME, the ~10M-record drop $drop (CUSTOMERS, SEED;
#                            default 900000 7), CVM_PRIVACY_KEY
#   bench_need CMD PKG       installs Debian's PKG with apt-get when CMD is missing
#   bench_workdir NAME       a fresh $work folder; on exit, stops the processes
#                            whose pids are in $bench_pids, shows the portal's
#                            log tail on failure, keeps $work on failure or KEEP
#   bench_gql QUERY [VARS]   a GraphQL request to $url/graphql as $token (files
#                            in $work); prints the data, stops on any error

bench_setup() {
  cd "$(dirname "${BASH_SOURCE[0]}")/../.."
  root="$PWD"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cvm-target}"
  bench="${CVM_BENCH_DIR:-$HOME/.cache/cvm-bench}"
  mkdir -p "$bench"
  local rev
  if rev="$(git rev-parse --short HEAD 2>/dev/null)"; then
    git diff --quiet HEAD -- etl shared Cargo.toml Cargo.lock || rev="$rev + uncommitted changes in etl/shared"
  else
    rev="${CVM_BENCH_REV:-unknown (not a git checkout)}"
  fi
  echo "== commit $rev; $(nproc) cores; $(uname -m); load average: $(uptime | sed 's/.*load average: //')"
}

bench_binary() {
  cargo build --release -p cvm-etl
  # A private copy, so a concurrent build in the shared target dir cannot swap it mid-run.
  bin="$bench/cvm-etl.$1"
  cp "$CARGO_TARGET_DIR/release/cvm-etl" "$bin"
}

bench_privacy_setup() {
  customers="${CUSTOMERS:-900000}"
  seed="${SEED:-7}"
  bench_setup
  bench_binary "$1"
  drop="$bench/drop-$customers-$seed-0.001"
  bench_generated "$drop" --customers "$customers" --seed "$seed" --dirty-ratio 0.001
  export CVM_PRIVACY_KEY="bench privacy key, thirty-two bytes at least"
}

bench_python() {
  local module="$1"
  shift
  py="${BENCH_PYTHON:-}"
  if [ -z "$py" ]; then
    local venv="$root/ops/bench/.venv"
    if ! "$venv/bin/python" -c "import $module" 2>/dev/null; then
      python3 -m venv "$venv"
      "$venv/bin/pip" install -q "$@"
    fi
    py="$venv/bin/python"
  fi
}

bench_generated() {
  local dir="$1"
  shift
  if [ ! -f "$dir/.generated" ] || [ "$(cat "$dir/.generated")" != "$*" ]; then
    rm -rf "$dir"
    echo "== generating $dir"
    "$bin" -q generate --out "$dir" "$@"
    echo "$*" >"$dir/.generated"
  fi
}

bench_workdir() {
  work="$(mktemp -d "${TMPDIR:-/tmp}/cvm-$1-bench.XXXXXX")"
  bench_pids=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

bench_cleanup() {
  local rc=$? pid
  for pid in "${bench_pids[@]}"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [ "$rc" -ne 0 ] && [ -s "$work/portal.log" ]; then
    echo "== last lines of the portal's log ($work/portal.log)" >&2
    tail -n 20 "$work/portal.log" >&2
  fi
  if [ -n "${KEEP:-}" ] || [ "$rc" -ne 0 ]; then echo "== work folder kept: $work" >&2; else rm -rf "$work"; fi
}

bench_need() {
  command -v "$1" >/dev/null && return
  echo "== installing $2 (apt-get)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "$2" >/dev/null
}

bench_gql() {
  local vars="${2:-}"
  [ -n "$vars" ] || vars='{}'
  jq -nc --arg q "$1" --argjson v "$vars" '{query: $q, variables: $v}' >"$work/request.json"
  curl -fsS "$url/graphql" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    --data-binary @"$work/request.json" >"$work/response.json"
  if jq -e 'has("errors")' "$work/response.json" >/dev/null; then
    echo "error: GraphQL: $(jq -c .errors "$work/response.json")" >&2
    exit 1
  fi
  jq -c .data "$work/response.json"
}
