#!/usr/bin/env python3
"""Times a fixed query set against a Prometheus-API URL.

usage: query_latency.py URL --end UNIX [--reps N] [--range-hours H] [--versus URL2]...

Each query runs once as warm-up, then --reps times as an instant query at
--end and --reps times as a range query over the last --range-hours at a
60 s step. Prints one JSON object: per-kind p50 and mean seconds over all
queries and repetitions, and the number of failed requests (a failure is
any non-success answer; the benchmark refuses to report on failures).

With --versus (repeatable), every request to URL is followed by the same
request to each URL2, and one more JSON line per URL2 reports it: the
systems are timed in the same seconds, so a ratio of two does not move
when the machine itself speeds up or slows down between passes. Every timed request waits
--pause-ms first (default 20), so what one system still does after
answering (closing the connection, freeing buffers) is not timed against
the other.
"""
import argparse
import json
import statistics
import time
import urllib.parse
import urllib.request

QUERIES = [
    "sum by (cluster) (container_memory_working_set_bytes)",
    "sum by (cluster) (rate(container_cpu_usage_seconds_total[5m]))",
    "sum by (cluster, namespace) (rate(container_cpu_usage_seconds_total[5m]))",
    "1 - sum by (cluster) (node_memory_MemAvailable_bytes) / sum by (cluster) (node_memory_MemTotal_bytes)",
    "100 * (1 - sum by (cluster) (node_filesystem_avail_bytes) / sum by (cluster) (node_filesystem_size_bytes))",
    "count by (cluster) (kube_pod_info)",
    "count by (cluster) (kube_namespace_status_phase{phase=\"Active\"} == 1)",
    "count by (cluster) (kube_persistentvolumeclaim_info)",
    "histogram_quantile(0.99, sum by (cluster, le) (rate(apiserver_request_duration_seconds_bucket[5m])))",
    "sum by (cluster) (rate(apiserver_request_total{code=~\"5..\"}[5m])) / sum by (cluster) (rate(apiserver_request_total[5m]))",
    "topk(5, sum by (cluster, pod) (container_memory_working_set_bytes))",
]


def get(url, path, params):
    q = urllib.parse.urlencode(params)
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"{url}{path}?{q}", timeout=120) as r:
        body = json.load(r)
    dt = time.perf_counter() - t0
    return dt, body.get("status") == "success" and not body.get("warnings")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--end", type=int, required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--range-hours", type=float, default=2)
    ap.add_argument(
        "--versus",
        action="append",
        default=[],
        help="another API URL (repeatable), asked the same request right after each request "
        "to URL; all then see the same machine conditions, and one JSON line is printed per URL",
    )
    ap.add_argument(
        "--pause-ms",
        type=float,
        default=20,
        help="idle time before each request, so one system's after-work (connection "
        "teardown, buffer frees) does not land in the other's timing",
    )
    a = ap.parse_args()
    urls = [a.url] + a.versus
    start = a.end - int(a.range_hours * 3600)
    out = [{"instant": [], "range": []} for _ in urls]
    failed = [0 for _ in urls]
    for q in QUERIES:
        inst = ("/api/v1/query", {"query": q, "time": a.end})
        rng = ("/api/v1/query_range", {"query": q, "start": start, "end": a.end, "step": 60})
        for kind, (path, params) in (("instant", inst), ("range", rng)):
            for i, url in enumerate(urls):
                try:
                    get(url, path, params)
                except Exception as e:  # report, never hide
                    failed[i] += 1
                    print(f"# {url} warm-up {kind} {q}: {e}", flush=True)
            for _ in range(a.reps):
                for i, url in enumerate(urls):
                    time.sleep(a.pause_ms / 1000)
                    try:
                        dt, ok = get(url, path, params)
                        out[i][kind].append(dt)
                        failed[i] += 0 if ok else 1
                    except Exception as e:  # report, never hide
                        failed[i] += 1
                        print(f"# {url} {kind} {q}: {e}", flush=True)
    for i, _ in enumerate(urls):
        res = {"failed": failed[i], "queries": len(QUERIES)}
        for kind, xs in out[i].items():
            res[f"{kind}_p50"] = statistics.median(xs) if xs else None
            res[f"{kind}_mean"] = statistics.fmean(xs) if xs else None
        print(json.dumps(res))


if __name__ == "__main__":
    main()
