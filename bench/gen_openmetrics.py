#!/usr/bin/env python3
"""Deterministic OpenMetrics test data for the tsdb benchmarks.

usage: gen_openmetrics.py OUT --series N --hours H [--step S] [--start UNIX]

Counters with realistic increments and occasional resets, gauges with
noise, and a classic histogram; timestamps in seconds as OpenMetrics wants.
"""
import argparse
import random


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--hours", type=int, default=12)
    ap.add_argument("--step", type=int, default=15)
    ap.add_argument("--start", type=int, default=1_790_000_000)
    a = ap.parse_args()
    rnd = random.Random(42)
    n_counter = a.series // 2
    n_gauge = a.series // 4
    n_hist = a.series - n_counter - n_gauge
    buckets = ["0.005", "0.01", "0.05", "0.1", "0.5", "1", "5", "+Inf"]
    steps = a.hours * 3600 // a.step
    with open(a.out, "w") as f:
        f.write("# TYPE http_requests counter\n")
        vals = [0.0] * n_counter
        for i in range(steps):
            t = a.start + i * a.step
            for k in range(n_counter):
                if rnd.random() < 0.0005:
                    vals[k] = 0.0
                vals[k] += rnd.randint(0, 40)
                f.write(f'http_requests_total{{cluster="c{k % 2}",namespace="ns{k % 7}",pod="pod-{k}",code="{200 if k % 5 else 500}"}} {vals[k]:.0f} {t}\n')
        f.write("# TYPE container_memory_working_set_bytes gauge\n")
        for i in range(steps):
            t = a.start + i * a.step
            for k in range(n_gauge):
                v = 200_000_000 + k * 1000 + rnd.randint(-5_000_000, 5_000_000)
                f.write(f'container_memory_working_set_bytes{{cluster="c{k % 2}",namespace="ns{k % 7}",pod="pod-{k}"}} {v} {t}\n')
        f.write("# TYPE request_duration_seconds histogram\n")
        groups = max(1, n_hist // len(buckets))
        counts = [[0] * len(buckets) for _ in range(groups)]
        for i in range(steps):
            t = a.start + i * a.step
            for g in range(groups):
                c = 0
                for b in range(len(buckets)):
                    c += rnd.randint(0, 3)
                    counts[g][b] = max(counts[g][b] + rnd.randint(0, 2), c)
                for b, le in enumerate(buckets):
                    f.write(f'request_duration_seconds_bucket{{pod="pod-{g}",le="{le}"}} {counts[g][b]} {t}\n')
        f.write("# EOF\n")


if __name__ == "__main__":
    main()
