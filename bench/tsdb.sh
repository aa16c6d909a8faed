#!/usr/bin/env bash
# Side-by-side storage benchmarks: strata vs Prometheus 2.42's promtool on
# the same input, in one run on this machine. Prints a Markdown table of
# ratios for BENCHMARKS.md, then runs the criterion micro-benchmarks.
#
# usage: bench/tsdb.sh [SERIES] [HOURS]      (default 1000 series, 12 h at 15 s)
set -euo pipefail
cd "$(dirname "$0")/.."
series=${1:-1000}
hours=${2:-12}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

command -v promtool >/dev/null || { echo "promtool missing: apt-get install prometheus" >&2; exit 1; }
cargo build --release -q --bin strata
strata=${CARGO_TARGET_DIR:-target}/release/strata

python3 bench/gen_openmetrics.py "$work/in.om" --series "$series" --hours "$hours"
samples=$(grep -vc '^#' "$work/in.om")
echo "input: $series series, $hours h at 15 s, $samples samples, $(du -m "$work/in.om" | cut -f1) MiB"

measure() { # name cmd... -> sets secs, rss_kb
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null
  read -r secs rss_kb < "$work/time"
}

measure promtool tsdb create-blocks-from openmetrics "$work/in.om" "$work/prom"
p_bf=$secs p_bf_rss=$rss_kb
measure "$strata" tools tsdb create-blocks-from openmetrics "$work/in.om" "$work/strata"
s_bf=$secs s_bf_rss=$rss_kb

bytes() { du -sb "$1"/*/chunks "$1"/*/index | awk '{s+=$1} END {print s}'; }
p_bytes=$(bytes "$work/prom")
s_bytes=$(bytes "$work/strata")

mkdir -p "$work/prom/wal"
measure promtool tsdb dump "$work/prom"
p_dump=$secs p_dump_rss=$rss_kb
measure "$strata" tools tsdb dump "$work/prom"
s_dump=$secs s_dump_rss=$rss_kb

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
per() { python3 -c "print(f'{$1/$2:.3f}')"; }
echo
echo "| work (same input, same machine) | promtool 2.42 | strata | strata / promtool |"
echo "|---|---|---|---|"
echo "| backfill create-blocks-from openmetrics: wall s | $p_bf | $s_bf | $(ratio "$s_bf" "$p_bf") |"
echo "| backfill: peak RSS MiB | $((p_bf_rss/1024)) | $((s_bf_rss/1024)) | $(ratio "$s_bf_rss" "$p_bf_rss") |"
echo "| bytes per sample on disk (chunks + index) | $(per "$p_bytes" "$samples") | $(per "$s_bytes" "$samples") | $(ratio "$s_bytes" "$p_bytes") |"
echo "| dump all samples of promtool's blocks: wall s | $p_dump | $s_dump | $(ratio "$s_dump" "$p_dump") |"
echo "| dump: peak RSS MiB | $((p_dump_rss/1024)) | $((s_dump_rss/1024)) | $(ratio "$s_dump_rss" "$p_dump_rss") |"
echo
echo "criterion micro-benchmarks (no Prometheus equivalent runs here without a Go toolchain):"
cargo bench -q -p strata-tsdb --bench xor -- --quick 2>&1 | grep -E "time:|thrpt:|^[a-z]" || true
cargo bench -q -p strata-tsdb --bench head -- --quick 2>&1 | grep -E "time:|thrpt:|memory|^[a-z]" || true
cargo bench -q -p strata-tsdb --bench select -- --quick 2>&1 | grep -E "time:|thrpt:|^[a-z]" || true
