#!/usr/bin/env bash
# Remote-write receive benchmark (issue 4), side by side in one run: the same
# remote_write 1.0 load (server/examples/remote_write_load.rs: Kubernetes /
# node-exporter label sets, one sample per series per 15 s scrape, requests
# of BATCH samples, SENDERS concurrent keep-alive senders, bodies encoded
# before the timed phase) against `strata tsdb`, Prometheus 2.42 and
# VictoriaMetrics 1.79, one after the other, each on a fresh data dir.
#
# For each server: accepted (2xx-acknowledged) samples/s, server CPU seconds
# per million samples (utime+stime from /proc/PID/stat around the timed
# phase), peak RSS (VmHWM at the end), and a check that a query on the
# server counts every acknowledged sample. Prints a Markdown table of ratios
# for BENCHMARKS.md.
#
# usage: bench/remote_write.sh [SERIES] [ROUNDS] [BATCH] [SENDERS]
#        (default 20000 series, 120 rounds = 30 min of 15 s scrapes, 1000, 8)
# STRATA_BIN=path skips the strata release build (e.g. to measure an older build).
set -euo pipefail
cd "$(dirname "$0")/.."
series=${1:-20000}
rounds=${2:-120}
batch=${3:-1000}
senders=${4:-8}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

command -v prometheus >/dev/null || { echo "prometheus missing: apt-get install prometheus" >&2; exit 1; }
if ! command -v victoria-metrics >/dev/null; then
  echo "installing victoria-metrics (Debian package)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q victoria-metrics >/dev/null
fi
target=${CARGO_TARGET_DIR:-target}/release
if [[ -z "${STRATA_BIN:-}" ]]; then
  cargo build --release -q --bin strata
  STRATA_BIN=$target/strata
fi
cargo build --release -q -p strata-server --example remote_write_load
strata=$STRATA_BIN
load=$target/examples/remote_write_load

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url
  for _ in $(seq 1 300); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "timeout waiting for $1" >&2; exit 1
}
stop() { # pid
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
printf 'global:\n  scrape_interval: 15s\n' > "$work/cfg.yml"

# Number of samples stored in [min_ts, max_ts], by a query on the server: a
# range selector over every series, answered with the raw samples (an
# aggregate such as count_over_time would drop __name__ and collide).
count_query() { # base_url min_ts max_ts
  local span=$(( ($3 - $2) / 1000 + 60 ))
  curl -s "$1/api/v1/query" --data-urlencode "query={__name__=~\".+\"}[${span}s]" \
    --data-urlencode "time=$(python3 -c "print(($3 + 1) / 1000)")" |
    python3 -c '
import json, sys
raw = sys.stdin.read()
try:
    print(sum(len(s["values"]) for s in json.loads(raw)["data"]["result"]))
except Exception:
    print(f"query failed: {raw[:300]!r}", file=sys.stderr)
    print(-1)'
}

declare -A res
run() { # name url query_base pid
  local name=$1 url=$2 base=$3 pid=$4 out
  echo "== $name" >&2
  out=$("$load" "$url" --series "$series" --rounds "$rounds" --batch "$batch" --senders "$senders" --pid "$pid")
  echo "$out" >&2
  for k in samples_sent samples_acked samples_per_s cpu_s_per_M server_hwm_kb loadgen_cpu_s secs min_ts max_ts; do
    res[$name,$k]=$(echo "$out" | tr ' ' '\n' | sed -n "s/^$k=//p")
  done
  if [ "$name" = victoriametrics ]; then
    curl -sf "$base/internal/force_flush" >/dev/null || true
    sleep 2
  fi
  res[$name,stored]=$(count_query "$base" "${res[$name,min_ts]}" "${res[$name,max_ts]}")
  echo "$name: stored per query ${res[$name,stored]}, acknowledged ${res[$name,samples_acked]}" >&2
}

# strata tsdb
port=$(free_port)
"$strata" tsdb --config.file="$work/cfg.yml" --storage.tsdb.path="$work/strata" \
  --web.listen-address="127.0.0.1:$port" --web.enable-remote-write-receiver >"$work/strata.log" 2>&1 &
pid=$!; pids+=("$pid")
wait_http "http://127.0.0.1:$port/-/ready"
run strata "http://127.0.0.1:$port/api/v1/write" "http://127.0.0.1:$port" "$pid"
stop "$pid"

# Prometheus 2.42
port=$(free_port)
prometheus --config.file="$work/cfg.yml" --storage.tsdb.path="$work/prom" \
  --web.listen-address="127.0.0.1:$port" --web.enable-remote-write-receiver >"$work/prom.log" 2>&1 &
pid=$!; pids+=("$pid")
wait_http "http://127.0.0.1:$port/-/ready"
run prometheus "http://127.0.0.1:$port/api/v1/write" "http://127.0.0.1:$port" "$pid"
stop "$pid"

# VictoriaMetrics 1.79 (single node). A latency offset of 0 so that the
# check query sees the newest samples.
port=$(free_port)
victoria-metrics -storageDataPath="$work/vm" -httpListenAddr="127.0.0.1:$port" \
  -search.latencyOffset=0s -retentionPeriod=1y >"$work/vm.log" 2>&1 &
pid=$!; pids+=("$pid")
wait_http "http://127.0.0.1:$port/health"
run victoriametrics "http://127.0.0.1:$port/api/v1/write" "http://127.0.0.1:$port" "$pid"
stop "$pid"

ratio() { python3 -c "a,b=float('$1'),float('$2'); print(f'{a/b:.2f}' if b else 'n/a')"; }
mib() { echo $(( $1 / 1024 )); }
s=strata p=prometheus v=victoriametrics
echo
echo "Load: $series series, $rounds scrapes at 15 s ($(( series * rounds )) samples), $batch samples per request, $senders senders."
echo "Machine: $(nproc) vCPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "| remote_write 1.0 receive | strata tsdb | Prometheus 2.42 | VictoriaMetrics 1.79 | strata / Prometheus | strata / VM |"
echo "|---|---|---|---|---|---|"
echo "| accepted samples/s | ${res[$s,samples_per_s]} | ${res[$p,samples_per_s]} | ${res[$v,samples_per_s]} | $(ratio "${res[$s,samples_per_s]}" "${res[$p,samples_per_s]}") | $(ratio "${res[$s,samples_per_s]}" "${res[$v,samples_per_s]}") |"
echo "| server CPU s per million samples | ${res[$s,cpu_s_per_M]} | ${res[$p,cpu_s_per_M]} | ${res[$v,cpu_s_per_M]} | $(ratio "${res[$s,cpu_s_per_M]}" "${res[$p,cpu_s_per_M]}") | $(ratio "${res[$s,cpu_s_per_M]}" "${res[$v,cpu_s_per_M]}") |"
echo "| peak RSS MiB (VmHWM) | $(mib "${res[$s,server_hwm_kb]}") | $(mib "${res[$p,server_hwm_kb]}") | $(mib "${res[$v,server_hwm_kb]}") | $(ratio "${res[$s,server_hwm_kb]}" "${res[$p,server_hwm_kb]}") | $(ratio "${res[$s,server_hwm_kb]}" "${res[$v,server_hwm_kb]}") |"
echo "| timed phase s (load generator CPU s) | ${res[$s,secs]} (${res[$s,loadgen_cpu_s]}) | ${res[$p,secs]} (${res[$p,loadgen_cpu_s]}) | ${res[$v,secs]} (${res[$v,loadgen_cpu_s]}) | | |"
echo "| acknowledged / counted by a query | ${res[$s,samples_acked]} / ${res[$s,stored]} | ${res[$p,samples_acked]} / ${res[$p,stored]} | ${res[$v,samples_acked]} / ${res[$v,stored]} | | |"
fail=0
for n in $s $p $v; do
  if [ "${res[$n,samples_acked]}" != "${res[$n,stored]}" ]; then
    echo "MISMATCH: $n acknowledged ${res[$n,samples_acked]} samples but a query counts ${res[$n,stored]}" >&2
    fail=1
  fi
done
exit "$fail"
