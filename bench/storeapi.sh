#!/usr/bin/env bash
# StoreAPI streaming benchmark (issue 5), side by side in one run:
# `strata sidecar` over `strata tsdb` and `strata sidecar` over a real
# Prometheus 2.42, both holding the same 10k series (one 2h block written by
# each one's own backfill from the same OpenMetrics input).
#
# For each stack and each concurrency it runs identical Series calls for the
# whole 10k-series selection through gRPC (storetest's `series_bench`
# example) and reports series/s and samples/s, and the peak memory each
# concurrent call adds to the sidecar and to the TSDB behind it (peak RSS,
# VmHWM, reset through /proc/PID/clear_refs before each round, minus the
# RSS before it, divided by the number of calls).
#
# usage: bench/storeapi.sh [SERIES] [CONCURRENCY...]   (default 10000; 1 4)
set -euo pipefail
cd "$(dirname "$0")/.."
series=${1:-10000}
shift || true
levels=("${@:-1 4}")
read -r -a levels <<< "${levels[*]}"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

command -v prometheus >/dev/null || { echo "prometheus missing: apt-get install prometheus" >&2; exit 1; }
cargo build --release -q --bin strata
cargo build --release -q -p strata-storetest --example series_bench
target=${CARGO_TARGET_DIR:-target}/release
strata=$target/strata
client=$target/examples/series_bench

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url
  for _ in $(seq 1 300); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "timeout waiting for $1" >&2; exit 1
}

# One 2h block that ends about 2h ago (inside the default retention).
now=$(date +%s)
start=$(( (now - 4*3600) / 7200 * 7200 ))
python3 bench/gen_openmetrics.py "$work/in.om" --series "$series" --hours 2 --start "$start"
samples=$(grep -vc '^#' "$work/in.om")
echo "input: $series series, 2 h at 15 s, $samples samples"
promtool tsdb create-blocks-from openmetrics "$work/in.om" "$work/prom" >/dev/null
"$strata" tools tsdb create-blocks-from openmetrics "$work/in.om" "$work/strata" >/dev/null
printf 'global:\n  external_labels:\n    cluster: bench\n    replica: a\n' > "$work/cfg.yml"

pp=$(free_port); sp=$(free_port)
prometheus --config.file="$work/cfg.yml" --storage.tsdb.path="$work/prom" \
  --web.listen-address="127.0.0.1:$pp" --storage.tsdb.retention.time=30d \
  --storage.tsdb.min-block-duration=2h --storage.tsdb.max-block-duration=2h >"$work/prom.log" 2>&1 &
prom_pid=$!; pids+=("$prom_pid")
"$strata" tsdb --config.file="$work/cfg.yml" --storage.tsdb.path="$work/strata" \
  --web.listen-address="127.0.0.1:$sp" --storage.tsdb.retention.time=30d >"$work/strata.log" 2>&1 &
tsdb_pid=$!; pids+=("$tsdb_pid")
wait_http "http://127.0.0.1:$pp/-/ready"; wait_http "http://127.0.0.1:$sp/-/ready"

start_sidecar() { # tsdb_url data_dir -> sets sc_pid sc_grpc
  local g h
  g=$(free_port); h=$(free_port)
  "$strata" sidecar --tsdb.path="$2" --prometheus.url="$1" \
    --grpc-address="127.0.0.1:$g" --http-address="127.0.0.1:$h" >"$work/sidecar-$g.log" 2>&1 &
  sc_pid=$!; pids+=("$sc_pid"); sc_grpc="127.0.0.1:$g"
  wait_http "http://127.0.0.1:$h/-/ready"
}
start_sidecar "http://127.0.0.1:$sp" "$work/strata"; s_sc=$sc_pid; s_grpc=$sc_grpc
start_sidecar "http://127.0.0.1:$pp" "$work/prom"; p_sc=$sc_pid; p_grpc=$sc_grpc

kb() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"; }

declare -A res
run() { # name grpc sidecar_pid tsdb_pid concurrency
  local name=$1 grpc=$2 sc=$3 db=$4 c=$5
  "$client" "$grpc" --concurrency 1 --repeat 1 >/dev/null   # warm-up: page cache, connections
  local sc_rss db_rss
  sc_rss=$(kb "$sc" VmRSS); db_rss=$(kb "$db" VmRSS)
  echo 5 > "/proc/$sc/clear_refs"; echo 5 > "/proc/$db/clear_refs"
  local out
  out=$("$client" "$grpc" --concurrency "$c" --repeat 3)
  local sc_hwm db_hwm
  sc_hwm=$(kb "$sc" VmHWM); db_hwm=$(kb "$db" VmHWM)
  # Best of three rounds.
  local best
  best=$(echo "$out" | sort -t= -k5 -g | head -n1)
  echo "$name c=$c: $best"
  local sps smps
  sps=$(echo "$best" | sed -E 's/.*series_per_s=([0-9]+).*/\1/')
  smps=$(echo "$best" | sed -E 's/.*samples_per_s=([0-9]+).*/\1/')
  res[$name,$c,series]=$sps
  res[$name,$c,samples]=$smps
  res[$name,$c,sc_mem]=$(( (sc_hwm - sc_rss) / c / 1024 ))
  res[$name,$c,db_mem]=$(( (db_hwm - db_rss) / c / 1024 ))
}
for c in "${levels[@]}"; do
  run strata "$s_grpc" "$s_sc" "$tsdb_pid" "$c"
  run prometheus "$p_grpc" "$p_sc" "$prom_pid" "$c"
done

ratio() { python3 -c "a,b=$1,$2; print(f'{a/b:.2f}' if b else 'n/a')"; }
echo
echo "| per Series call of $series series ($samples samples) | concurrent calls | sidecar over Prometheus 2.42 | sidecar over strata tsdb | strata / Prometheus |"
echo "|---|---|---|---|---|"
for c in "${levels[@]}"; do
  for k in series samples; do
    echo "| $k/s (all calls together) | $c | ${res[prometheus,$c,$k]} | ${res[strata,$c,$k]} | $(ratio "${res[strata,$c,$k]}" "${res[prometheus,$c,$k]}") |"
  done
  echo "| sidecar peak MiB added per call | $c | ${res[prometheus,$c,sc_mem]} | ${res[strata,$c,sc_mem]} | $(ratio "${res[strata,$c,sc_mem]}" "${res[prometheus,$c,sc_mem]}") |"
  echo "| TSDB peak MiB added per call | $c | ${res[prometheus,$c,db_mem]} | ${res[strata,$c,db_mem]} | $(ratio "${res[strata,$c,db_mem]}" "${res[prometheus,$c,db_mem]}") |"
done
