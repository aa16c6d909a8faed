#!/usr/bin/env python3
"""Times dashboard range queries against two Prometheus-API servers, side by side.

usage: promql_latency.py NAME=URL NAME=URL --end UNIX [--reps N]
                         [--ranges 6h:60,24h:300]

For every query and every range (window:step in seconds), each server
answers once as warm-up, then --reps times, the servers alternating so that
load from elsewhere on the machine hits both alike. Latency is client side
(urllib, a new connection per request, the whole JSON answer read and
parsed). The answers of the two servers are compared (same series, values
within 1e-6 relative); a failed or differing answer is reported and counted.
Prints one JSON object: per query and range, each server's median and p90
seconds, and the number of failures and mismatches.
"""
import argparse
import json
import math
import statistics
import time
import urllib.parse
import urllib.request

QUERIES = [
    ("rate, sum by", "sum by (namespace) (rate(container_cpu_usage_seconds_total[5m]))"),
    ("histogram_quantile", "histogram_quantile(0.99, sum by (le, verb) (rate(apiserver_request_duration_seconds_bucket[5m])))"),
    ("topk", "topk(10, sum by (pod) (rate(container_cpu_usage_seconds_total[5m])))"),
    ("avg_over_time", "sum by (namespace) (avg_over_time(container_memory_working_set_bytes[1h]))"),
    ("subquery", "max_over_time(sum by (namespace) (rate(container_cpu_usage_seconds_total[5m]))[1h:5m])"),
    ("group_left join", "sum by (node) (rate(container_cpu_usage_seconds_total[5m]) * on (namespace, pod) group_left (node) kube_pod_info)"),
    ("ratio of sums", "1 - sum by (node) (node_memory_MemAvailable_bytes) / sum by (node) (node_memory_MemTotal_bytes)"),
]


def get(url, params):
    q = urllib.parse.urlencode(params)
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{q}", timeout=300) as r:
        body = json.load(r)
    return time.perf_counter() - t0, body


def summary(body):
    """Series label set -> list of (t, value) of a matrix answer."""
    out = {}
    for s in body.get("data", {}).get("result", []):
        key = json.dumps(s["metric"], sort_keys=True)
        out[key] = [(float(t), float(v)) for t, v in s["values"]]
    return out


def same(a, b):
    if a.keys() != b.keys():
        return f"series differ: {len(a)} vs {len(b)}"
    for k in a:
        if len(a[k]) != len(b[k]):
            return f"{k}: {len(a[k])} vs {len(b[k])} points"
        for (ta, va), (tb, vb) in zip(a[k], b[k]):
            if ta != tb:
                return f"{k}: timestamps {ta} vs {tb}"
            if math.isnan(va) and math.isnan(vb):
                continue
            if abs(va - vb) > 1e-6 * max(abs(va), abs(vb), 1e-9):
                return f"{k} at {ta}: {va} vs {vb}"
    return None


def p90(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, math.ceil(0.9 * len(xs)) - 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("servers", nargs=2, help="NAME=URL")
    ap.add_argument("--end", type=int, required=True)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--ranges", default="6h:60,24h:300")
    a = ap.parse_args()
    servers = [s.split("=", 1) for s in a.servers]
    ranges = []
    for r in a.ranges.split(","):
        window, step = r.split(":")
        secs = int(window[:-1]) * {"h": 3600, "m": 60}[window[-1]]
        ranges.append((window, secs, int(step)))
    failed = mismatched = 0
    rows = []
    for label, q in QUERIES:
        for window, secs, step in ranges:
            params = {"query": q, "start": a.end - secs, "end": a.end, "step": step}
            times = {name: [] for name, _ in servers}
            answers = {}
            try:
                for name, url in servers:
                    _, body = get(url, params)  # warm-up
                    if body.get("status") != "success":
                        raise RuntimeError(f"{name}: {body}")
                    answers[name] = summary(body)
                for _ in range(a.reps):
                    for name, url in servers:
                        dt, body = get(url, params)
                        if body.get("status") != "success":
                            raise RuntimeError(f"{name}: {body}")
                        times[name].append(dt)
            except Exception as e:  # report, never hide
                failed += 1
                print(f"# FAILED {label} {window}: {e}", flush=True)
                continue
            (n0, _), (n1, _) = servers
            diff = same(answers[n0], answers[n1])
            if diff:
                mismatched += 1
                print(f"# MISMATCH {label} {window}: {diff}", flush=True)
            row = {"query": label, "expr": q, "window": window, "step": step,
                   "series": len(answers[n1]), "points": sum(len(v) for v in answers[n1].values())}
            for name, xs in times.items():
                row[f"{name}_p50"] = statistics.median(xs)
                row[f"{name}_p90"] = p90(xs)
            rows.append(row)
            print(f"# {label} {window}: " + " ".join(f"{n} p50 {statistics.median(t)*1000:.1f} ms" for n, t in times.items()), flush=True)
    print(json.dumps({"failed": failed, "mismatched": mismatched, "rows": rows}))


if __name__ == "__main__":
    main()
