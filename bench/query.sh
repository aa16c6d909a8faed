#!/usr/bin/env bash
# Federated query latency (issue 6): `strata query` over 1, 2, 4 and 8
# clusters (each `strata tsdb --grpc-address` + `strata sidecar` with the
# same per-cluster data) against ONE Prometheus 2.42 holding the same total
# data with a cluster label on every series, in one run on this machine.
# Three queriers over the same clusters, one per read path:
#   sidecar:     querier -> sidecar StoreAPI -> tsdb remote read (Thanos' sidecar path);
#   local:       querier -> the tsdb's own StoreAPI, every query evaluated in the
#                querier (--query.mode=local; as a Thanos querier reads Receive);
#   distributed: the same, but queries whose groups stay within one cluster are
#                handed whole to the tsdbs over the Query API (the default).
# Prints a Markdown table for BENCHMARKS.md: p50 latency of the fixed query
# set (bench/query_latency.py), instant and range, for each path and
# Prometheus, the strata/Prometheus ratios, and each querier's peak RSS
# (VmHWM from /proc). Every request goes to each querier and Prometheus in
# turn (query_latency.py --versus), so a change in the machine's own speed
# moves all sides of a ratio. On stderr, per cluster count: CPU ms per
# request by process kind (each querier, all sidecars, all tsdbs (serving
# every path), Prometheus; utime+stime from /proc/PID/stat).
#
# usage: bench/query.sh [PODS_PER_NAMESPACE] [HOURS] [REPS] [CLUSTER_COUNTS]
#        default 10 pods x 4 namespaces, 6 h at 30 s, 5 reps, "1 2 4 8"
#        small and quick: bench/query.sh 3 2 2 "1 2"
# STRATA_BIN=path skips the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
pods=${1:-10}
hours=${2:-6}
reps=${3:-5}
counts=${4:-"1 2 4 8"}
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
$strata query --help >/dev/null 2>&1 || { echo "this strata has no 'query' subcommand" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url what pid
  for _ in $(seq 1 600); do
    curl -fs -o /dev/null "$1" && return 0
    kill -0 "$3" 2>/dev/null || { echo "$2 died; log:" >&2; tail -20 "$work/$2.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$2 not ready" >&2; exit 1
}
end=$(( $(date +%s) / 60 * 60 - 60 ))
max=0; for n in $counts; do (( n > max )) && max=$n; done

# Per-cluster strata data (no cluster label: it comes from external labels).
declare -a sidecar_addr tsdb_grpc_addr
tsdb_pids=(); sidecar_pids=()
cpu_ticks() { # pids...: summed utime+stime in clock ticks
  local t=0 f
  for p in "$@"; do read -r -a f <"/proc/$p/stat"; t=$((t + f[13] + f[14])); done
  echo "$t"
}
hz=$(getconf CLK_TCK)
start_cluster() { # index
  local i=$1 d="$work/c$1"
  mkdir -p "$d/data"
  python3 bench/gen_k8s.py "$d/in.om" --clusters "$i" --pods "$pods" --hours "$hours" --end "$end"
  $strata tools tsdb create-blocks-from openmetrics -q "$d/in.om" "$d/data" >/dev/null
  rm -f "$d/in.om"
  printf 'global:\n  scrape_interval: 15s\n  external_labels:\n    cluster: cluster%d\n' $((i + 1)) > "$d/prometheus.yml"
  local p g h t
  p=$(free_port); g=$(free_port); h=$(free_port); t=$(free_port)
  $strata tsdb --config.file="$d/prometheus.yml" --storage.tsdb.path="$d/data" \
    --web.listen-address=127.0.0.1:$p --storage.tsdb.retention.time=30d --grpc-address=127.0.0.1:$t >"$work/tsdb$i.log" 2>&1 &
  pids+=($!); tsdb_pids+=($!); wait_http "http://127.0.0.1:$p/-/ready" "tsdb$i" $!
  $strata sidecar --tsdb.path="$d/data" --prometheus.url=http://127.0.0.1:$p \
    --grpc-address=127.0.0.1:$g --http-address=127.0.0.1:$h >"$work/sidecar$i.log" 2>&1 &
  pids+=($!); sidecar_pids+=($!); wait_http "http://127.0.0.1:$h/-/ready" "sidecar$i" $!
  sidecar_addr[$i]=127.0.0.1:$g
  tsdb_grpc_addr[$i]=127.0.0.1:$t
}

start_querier() { # name endpoint... ; sets qport and qpid
  local name=$1; shift
  qport=$(free_port); local g; g=$(free_port)
  $strata query --http-address=127.0.0.1:$qport --grpc-address=127.0.0.1:$g "$@" >"$work/$name.log" 2>&1 &
  qpid=$!; pids+=($qpid); wait_http "http://127.0.0.1:$qport/-/ready" "$name" $qpid
  local up=0 want=0 a
  for a in "$@"; do [[ $a == --endpoint=* ]] && want=$((want + 1)); done
  for _ in $(seq 1 300); do
    up=$(curl -fs "http://127.0.0.1:$qport/api/v1/stores" | python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]; print(sum(1 for v in d.values() for s in v if not s.get("lastError")))' 2>/dev/null || echo 0)
    (( up >= want )) && break; sleep 0.1
  done
  (( up >= want )) || { echo "$name sees $up of $want stores" >&2; exit 1; }
}

samples_per_cluster=""
echo "| clusters | series | instant p50 ms: sidecar / local / distributed / Prometheus | instant ratio: sidecar / local / distributed | range p50 ms: sidecar / local / distributed / Prometheus | range ratio: sidecar / local / distributed | querier peak RSS MiB: sidecar / local / distributed |"
echo "|---|---|---|---|---|---|---|"
started=0
for n in $counts; do
  while (( started < n )); do start_cluster $started; started=$((started + 1)); done
  # The reference: one Prometheus with the same N clusters' data.
  pd="$work/prom$n"; mkdir -p "$pd/data"
  python3 bench/gen_k8s.py "$pd/in.om" --clusters "$(seq -s, 0 $((n - 1)))" --cluster-label --pods "$pods" --hours "$hours" --end "$end"
  series=$(awk '$NF=='"$end"'' "$pd/in.om" | wc -l)
  promtool tsdb create-blocks-from openmetrics "$pd/in.om" "$pd/data" >/dev/null
  rm -f "$pd/in.om"
  printf 'global:\n  scrape_interval: 15s\n' > "$pd/prometheus.yml"
  pp=$(free_port)
  prometheus --config.file="$pd/prometheus.yml" --storage.tsdb.path="$pd/data" --web.listen-address=127.0.0.1:$pp \
    --storage.tsdb.retention.time=30d --storage.tsdb.min-block-duration=2h --storage.tsdb.max-block-duration=2h >"$work/prom$n.log" 2>&1 &
  ppid=$!; pids+=($ppid); wait_http "http://127.0.0.1:$pp/-/ready" "prom$n" $ppid
  # One querier per read path over the same N clusters.
  eps=(); for ((i = 0; i < n; i++)); do eps+=(--endpoint="${sidecar_addr[$i]}"); done
  start_querier "query-sidecar$n" "${eps[@]}"; qp=$qport; spid=$qpid
  eps=(); for ((i = 0; i < n; i++)); do eps+=(--endpoint="${tsdb_grpc_addr[$i]}"); done
  start_querier "query-local$n" --query.mode=local "${eps[@]}"; lp=$qport; lpid=$qpid
  start_querier "query-distributed$n" "${eps[@]}"; dp=$qport; dpid=$qpid
  qpid=$spid # below: qpid is the sidecar path's querier, lpid the local, dpid the distributed one
  T=("${tsdb_pids[@]:0:$n}"); S=("${sidecar_pids[@]:0:$n}")
  # Let freshly started TSDBs finish their start-up work (block loading,
  # compaction) before timing: wait, at most 60 s, until all strata and
  # Prometheus processes together use under 2 % of a core over a second.
  for _ in $(seq 1 60); do
    i0=$(cpu_ticks $qpid $lpid $dpid "${S[@]}" "${T[@]}" $ppid); sleep 1; i1=$(cpu_ticks $qpid $lpid $dpid "${S[@]}" "${T[@]}" $ppid)
    (( (i1 - i0) * 50 < hz )) && break
  done
  # One pass: each request goes to the three queriers and Prometheus in
  # turn, so all are timed under the same machine conditions; CPU is still
  # per process.
  c0=($(cpu_ticks $qpid) $(cpu_ticks $lpid) $(cpu_ticks $dpid) $(cpu_ticks "${S[@]}") $(cpu_ticks "${T[@]}") $(cpu_ticks $ppid))
  out=$(python3 bench/query_latency.py "http://127.0.0.1:$qp" --versus "http://127.0.0.1:$lp" --versus "http://127.0.0.1:$dp" --versus "http://127.0.0.1:$pp" --end "$end" --reps "$reps")
  c1=($(cpu_ticks $qpid) $(cpu_ticks $lpid) $(cpu_ticks $dpid) $(cpu_ticks "${S[@]}") $(cpu_ticks "${T[@]}") $(cpu_ticks $ppid))
  results=$(tail -n 4 <<<"$out")
  python3 - "$n" "$hz" "$reps" "${c0[*]}" "${c1[*]}" "$(head -n 1 <<<"$results")" <<'PY' >&2
import json, sys
n, hz, reps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c0, c1 = [list(map(int, a.split())) for a in sys.argv[4:6]]
reqs = json.loads(sys.argv[6])["queries"] * 2 * (reps + 1)
q, lq, dq, sc, t, pr = ((b - a) * 1000 / hz / reqs for a, b in zip(c0, c1))
print(f"# {n} clusters, CPU ms per request: sidecar querier {q:.1f} + sidecars {sc:.1f}; "
      f"local querier {lq:.1f}; distributed querier {dq:.1f}; tsdbs {t:.1f} per request of any path together; "
      f"Prometheus {pr:.1f}")
PY
  rss=$(for p in $qpid $lpid $dpid; do awk '/VmHWM/ {print int($2/1024)}' /proc/$p/status; done | paste -sd/ | sed 's|/| / |g')
  python3 - "$n" "$series" "$rss" "$results" <<'PY'
import json, sys
n, series, rss = sys.argv[1:4]
s, l, d, p = (json.loads(line) for line in sys.argv[4].splitlines())
if s["failed"] or l["failed"] or d["failed"] or p["failed"]:
    sys.exit(f"failed requests: sidecar {s['failed']}, local {l['failed']}, distributed {d['failed']}, "
             f"prometheus {p['failed']} (see output above)")
ms = lambda x: f"{x * 1000:.1f}"
def cols(k):
    lat = " / ".join(ms(r[k + "_p50"]) for r in (s, l, d, p))
    ratio = f"{s[k + '_p50'] / p[k + '_p50']:.2f} / {l[k + '_p50'] / p[k + '_p50']:.2f} / **{d[k + '_p50'] / p[k + '_p50']:.2f}**"
    return f"{lat} | {ratio}"
print(f"| {n} | {series} | {cols('instant')} | {cols('range')} | {rss} |")
PY
  kill $qpid $lpid $dpid $ppid 2>/dev/null || true
  wait $qpid $lpid $dpid $ppid 2>/dev/null || true
done
echo
echo "query set: $(python3 -c 'import sys; sys.path.insert(0, "bench"); import query_latency as q; print(len(q.QUERIES))') queries (bench/query_latency.py), $reps reps each after a warm-up; range = last 2 h at 60 s; per cluster: $pods pods x 4 namespaces, $hours h at 30 s"
