#!/usr/bin/env bash
# PromQL latency benchmark (issue 3), side by side in one run: `strata tsdb`
# and Prometheus 2.42 started on copies of the SAME blocks (written once by
# `strata tools tsdb create-blocks-from openmetrics`, whose blocks are
# byte-identical to promtool's), answering typical dashboard range queries
# (bench/promql_latency.py: rate + sum by, histogram_quantile over rate of
# buckets, topk, avg_over_time, a subquery, a group_left join, a ratio of
# sums) over the last 6 h at 60 s and the last 24 h at 5 min.
#
# Data: Kubernetes-style series (bench/gen_k8s.py; PODS per namespace x 4
# namespaces x 3 pod series, plus nodes, kube-state-metrics and API-server
# histograms), 24 h at STEP seconds. Block compaction is off on both servers
# (2 h min and max block duration), so no background work runs while timing.
#
# Reports per query and range: median and p90 latency of REPS runs each (the
# two servers alternating), the strata/Prometheus ratio of medians, the
# geometric mean of those ratios, and each server's peak RSS (VmHWM) after
# all queries and its RSS after start-up. Answers are compared (same series,
# values within 1e-6 relative) and differences are printed.
#
# usage: bench/promql.sh [PODS] [STEP] [REPS]    (default 830 (10,127 series), 60 s, 7)
#        quick: bench/promql.sh 50 300 3
# STRATA_BIN=path skips the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
pods=${1:-830}
step=${2:-60}
reps=${3:-7}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

command -v prometheus >/dev/null || { echo "prometheus missing: apt-get install prometheus" >&2; exit 1; }
if [[ -z "${STRATA_BIN:-}" ]]; then
  cargo build --release -q --bin strata
  STRATA_BIN=${CARGO_TARGET_DIR:-target}/release/strata
fi
strata=$STRATA_BIN

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url what pid
  for _ in $(seq 1 1200); do
    curl -fs -o /dev/null "$1" && return 0
    kill -0 "$3" 2>/dev/null || { echo "$2 died; log:" >&2; tail -20 "$work/$2.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$2 not ready" >&2; exit 1
}
kb() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"; }

# 24 h ending on a minute boundary two minutes ago (inside retention, and
# no head data: every query reads blocks only).
end=$(( $(date +%s) / 60 * 60 - 120 ))
t0=$(date +%s)
python3 bench/gen_k8s.py "$work/in.om" --pods "$pods" --nodes 20 --hours 24 --step "$step" --end "$end"
# Every step lists every series in the same order: count until the first repeat.
series=$(awk '!/^#/ {sub(/ [^ ]+ [^ ]+$/, ""); if (seen[$0]++) exit; n++} END {print n}' "$work/in.om")
samples=$(grep -vc '^#' "$work/in.om")
echo "input: $series series, 24 h at $step s, $samples samples ($(du -m "$work/in.om" | cut -f1) MiB), generated in $(( $(date +%s) - t0 )) s" >&2
"$strata" tools tsdb create-blocks-from openmetrics "$work/in.om" "$work/blocks" >/dev/null
rm -f "$work/in.om"
cp -r "$work/blocks" "$work/strata"
cp -r "$work/blocks" "$work/prom"
printf 'global:\n  scrape_interval: 15s\n' > "$work/cfg.yml"

flags=(--storage.tsdb.retention.time=30d --storage.tsdb.min-block-duration=2h --storage.tsdb.max-block-duration=2h)
sp=$(free_port); pp=$(free_port)
"$strata" tsdb --config.file="$work/cfg.yml" --storage.tsdb.path="$work/strata" \
  --web.listen-address="127.0.0.1:$sp" "${flags[@]}" >"$work/strata.log" 2>&1 &
s_pid=$!; pids+=("$s_pid")
prometheus --config.file="$work/cfg.yml" --storage.tsdb.path="$work/prom" \
  --web.listen-address="127.0.0.1:$pp" "${flags[@]}" >"$work/prom.log" 2>&1 &
p_pid=$!; pids+=("$p_pid")
wait_http "http://127.0.0.1:$sp/-/ready" strata "$s_pid"
wait_http "http://127.0.0.1:$pp/-/ready" prom "$p_pid"
sleep 2
s_rss0=$(kb "$s_pid" VmRSS); p_rss0=$(kb "$p_pid" VmRSS)

# Queries end 13 s after the last sample: samples lie on whole minutes and
# evaluation times do not, because Prometheus 2.42 has closed [t-r, t]
# windows and strata 3.x's left-open ones (they differ only for a sample
# exactly on a window boundary; the end-to-end tests do the same).
python3 bench/promql_latency.py "strata=http://127.0.0.1:$sp" "prometheus=http://127.0.0.1:$pp" \
  --end "$((end + 13))" --reps "$reps" > "$work/out.txt"
grep '^#' "$work/out.txt" >&2 || true
s_hwm=$(kb "$s_pid" VmHWM); p_hwm=$(kb "$p_pid" VmHWM)

echo
echo "Data: $series series, 24 h at $step s ($samples samples), blocks only. $reps runs per query and server."
echo "Machine: $(nproc) vCPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
python3 bench/promql_table.py "$work/out.txt" "$s_hwm" "$p_hwm" "$s_rss0" "$p_rss0"
