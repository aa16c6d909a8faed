#!/usr/bin/env python3
"""Kubernetes-style OpenMetrics data for the federated query benchmark.

usage: gen_k8s.py OUT --clusters 0,1,.. [--cluster-label] [--pods N]
                      [--hours H] [--step S] [--end UNIX]

Per cluster: cAdvisor container memory/CPU per pod, node-exporter memory
and filesystems, kube-state-metrics pods/namespaces/PVCs, API-server
request counters and a latency histogram. The same shape as the
end-to-end tests' generator (tests/it/dataset.rs). Every cluster has the
same size. With --cluster-label every series carries cluster="clusterN"
(the single-Prometheus reference); without it the cluster comes from the
TSDB's external labels. Timestamps in seconds; samples in time order.
"""
import argparse
import math
import random
import time

NAMESPACES = ["default", "kube-system", "monitoring", "shop"]
VERBS = ["GET", "LIST", "POST"]
CODES = ["200", "404", "500"]
LE = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]


def series_of(ci, pods, nodes):
    c = ci + 1.0
    out = []  # (name, labels dict, kind, params)
    for n in range(nodes):
        base = {"instance": f"10.{ci}.0.{n}:9100", "job": "node-exporter", "node": f"node-{n}"}
        total = 16e9 * c
        out.append(("node_memory_MemTotal_bytes", base, "const", total))
        out.append(("node_memory_MemAvailable_bytes", base, "gauge", (total * 0.4, total * 0.1)))
        for dev, mnt, fs in [("/dev/sda1", "/", "ext4"), ("/dev/sdb1", "/var/lib/kubelet", "xfs")]:
            lb = dict(base, device=dev, mountpoint=mnt, fstype=fs)
            size = 100e9 * (n + 1)
            out.append(("node_filesystem_size_bytes", lb, "const", size))
            out.append(("node_filesystem_avail_bytes", lb, "gauge", (size * 0.5, size * 0.2)))
    for ns in NAMESPACES:
        out.append(("kube_namespace_status_phase", {"job": "kube-state-metrics", "namespace": ns, "phase": "Active"}, "const", 1))
        out.append(("kube_persistentvolumeclaim_info", {"job": "kube-state-metrics", "namespace": ns, "persistentvolumeclaim": f"data-{ns}", "storageclass": "standard"}, "const", 1))
        for p in range(pods):
            pod = f"{ns}-{p}"
            out.append(("kube_pod_info", {"job": "kube-state-metrics", "namespace": ns, "pod": pod, "node": f"node-{p % nodes}"}, "const", 1))
            lb = {"container": "app", "job": "kubelet", "namespace": ns, "pod": pod, "instance": f"10.{ci}.0.{p % nodes}:10250"}
            out.append(("container_memory_working_set_bytes", lb, "gauge", (2e8 * (p % 5 + 1), 5e7)))
            out.append(("container_cpu_usage_seconds_total", lb, "counter", 0.05 * (p % 5 + 1)))
    for verb in VERBS:
        for code in CODES:
            out.append(("apiserver_request_total", {"code": code, "job": "apiserver", "verb": verb}, "counter", {"200": 50, "404": 1, "500": 0.2}[code]))
        mean = 0.3 if verb == "LIST" else 0.04
        for le in LE:
            x = math.inf if le == "+Inf" else float(le)
            frac = 1.0 if math.isinf(x) else 1 - math.exp(-x / mean)
            out.append(("apiserver_request_duration_seconds_bucket", {"job": "apiserver", "le": le, "verb": verb}, "bucket", (verb, frac)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--clusters", default="0")
    ap.add_argument("--cluster-label", action="store_true")
    ap.add_argument("--pods", type=int, default=10, help="pods per namespace")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--hours", type=int, default=6)
    ap.add_argument("--step", type=int, default=30)
    ap.add_argument("--end", type=int, default=int(time.time()) // 60 * 60 - 60)
    a = ap.parse_args()
    start = a.end - a.hours * 3600
    rows = []
    for ci in [int(x) for x in a.clusters.split(",")]:
        for name, labels, kind, param in series_of(ci, a.pods, a.nodes):
            lb = dict(labels)
            if a.cluster_label:
                lb["cluster"] = f"cluster{ci + 1}"
            head = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(lb.items())) + "}"
            rows.append([head, kind, param, 0.0, random.Random(head)])
    rnd_group = random.Random(7)
    with open(a.out, "w") as f:
        steps = (a.end - start) // a.step
        for i in range(steps + 1):
            t = start + i * a.step
            phase = t / 3600 * math.pi
            groups = {v: rnd_group.uniform(0.8, 1.2) for v in VERBS}
            for r in rows:
                head, kind, param, acc, rnd = r
                if kind == "const":
                    v = param
                elif kind == "gauge":
                    base, amp = param
                    v = round(base + amp * math.sin(phase + len(head)) + amp * 0.1 * rnd.random())
                elif kind == "counter":
                    if i > 0:
                        acc += param * a.step * (0.5 + rnd.random())
                    v = round(acc, 3)
                else:
                    verb, frac = param
                    if i > 0:
                        acc += math.floor(round(20 * a.step * groups[verb]) * frac)
                    v = acc
                r[3] = acc
                f.write(f"{head} {v} {t}\n")
        f.write("# EOF\n")


if __name__ == "__main__":
    main()
