//! Example cross-cluster PromQL queries over the demo's metrics.
//!
//! `strata demo` prints them; the dashboard and end-to-end tests reuse
//! [`EXAMPLES`] so that what the README promises is what is tested. Every
//! query groups or filters by the `cluster` external label, which only the
//! querier (through the sidecars) adds: run against a single `strata tsdb`,
//! they still return data, with an empty `cluster`.

/// One example query.
#[derive(Clone, Copy, Debug)]
pub struct Example {
    /// What the query shows, for humans.
    pub title: &'static str,
    pub query: &'static str,
}

/// The examples, in the order the demo prints them.
pub const EXAMPLES: &[Example] = &[
    Example {
        title: "Memory working set per cluster (bytes)",
        query: "sum by (cluster) (container_memory_working_set_bytes)",
    },
    Example {
        title: "CPU used per cluster (cores)",
        query: "sum by (cluster) (rate(container_cpu_usage_seconds_total[5m]))",
    },
    Example {
        title: "Node memory used (%)",
        query: "100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)",
    },
    Example {
        title: "Node CPU busy (%)",
        query: "100 * (1 - avg by (cluster, instance) (rate(node_cpu_seconds_total{mode=\"idle\"}[5m])))",
    },
    Example {
        title: "Disk usage (%) per filesystem",
        query: "100 * (1 - node_filesystem_avail_bytes{fstype!=\"tmpfs\"} / node_filesystem_size_bytes{fstype!=\"tmpfs\"})",
    },
    Example {
        title: "Running pods per cluster",
        query: "sum by (cluster) (kube_pod_status_phase{phase=\"Running\"})",
    },
    Example {
        title: "Namespaces per cluster",
        query: "count by (cluster) (kube_namespace_status_phase{phase=\"Active\"} == 1)",
    },
    Example {
        title: "PVCs per cluster and phase",
        query: "sum by (cluster, phase) (kube_persistentvolumeclaim_status_phase)",
    },
    Example {
        title: "Top 3 pods per cluster by network received (bytes/s)",
        query: "topk by (cluster) (3, sum by (cluster, namespace, pod) (rate(container_network_receive_bytes_total[5m])))",
    },
    Example {
        title: "API-server request rate per cluster and verb",
        query: "sum by (cluster, verb) (rate(apiserver_request_total[5m]))",
    },
    Example {
        title: "API-server error ratio (5xx) per cluster",
        query: "sum by (cluster) (rate(apiserver_request_total{code=~\"5..\"}[5m])) / sum by (cluster) (rate(apiserver_request_total[5m]))",
    },
    Example {
        title: "API-server p99 latency per cluster (seconds)",
        query: "histogram_quantile(0.99, sum by (cluster, le) (rate(apiserver_request_duration_seconds_bucket[5m])))",
    },
    Example {
        title: "Pending pods per cluster (scheduler)",
        query: "sum by (cluster) (scheduler_pending_pods)",
    },
];
