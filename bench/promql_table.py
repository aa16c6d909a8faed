#!/usr/bin/env python3
"""Markdown table for BENCHMARKS.md from promql_latency.py's JSON line.

usage: promql_table.py OUT_JSON STRATA_HWM_KB PROM_HWM_KB STRATA_RSS0_KB PROM_RSS0_KB
"""
import json
import math
import sys


def main():
    with open(sys.argv[1]) as f:
        d = json.loads(f.read().strip().splitlines()[-1])
    s_hwm, p_hwm, s0, p0 = (int(x) for x in sys.argv[2:6])
    print("| query | range / step | series | strata p50 / p90 ms | Prometheus 2.42 p50 / p90 ms | strata / Prometheus (p50) |")
    print("|---|---|---|---|---|---|")
    ratios = []
    for r in d["rows"]:
        ratio = r["strata_p50"] / r["prometheus_p50"]
        ratios.append(ratio)
        s = f"{r['strata_p50'] * 1000:.1f} / {r['strata_p90'] * 1000:.1f}"
        p = f"{r['prometheus_p50'] * 1000:.1f} / {r['prometheus_p90'] * 1000:.1f}"
        print(f"| {r['query']}: `{r['expr']}` | {r['window']} / {r['step']} s | {r['series']} | {s} | {p} | **{ratio:.2f}** |")
    if ratios:
        g = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
        print(f"| geometric mean of the ratios | | | | | **{g:.2f}** |")
    print(f"| peak RSS MiB after all queries (RSS after start-up) | | | {s_hwm // 1024} ({s0 // 1024}) | {p_hwm // 1024} ({p0 // 1024}) | **{s_hwm / p_hwm:.2f}** |")
    if d["failed"] or d["mismatched"]:
        print(f"\n{d['failed']} failed and {d['mismatched']} differing answers (see the lines above)")


if __name__ == "__main__":
    main()
