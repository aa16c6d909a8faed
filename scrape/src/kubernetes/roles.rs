//! Target groups from the stored objects, one function per role, with the
//! `__address__` and `__meta_kubernetes_*` labels and group sources of
//! Prometheus 2.42 (`discovery/kubernetes/{pod,node,service,endpoints,
//! endpointslice}.go` are the reference for which labels exist when).
//!
//! Groups are rebuilt from the stores as a whole after every change
//! instead of per object: a job's targets are re-diffed by the scrape
//! manager anyway, and it makes cross-object enrichment (an endpoints
//! group's service and pod labels) always current.

use std::collections::BTreeMap;

use super::objects::{EndpointSlice, Endpoints, Node, ObjectReference, Pod, Service, SlicePort};
use super::Stores;
use crate::config::KubernetesRole;
use crate::discovery::TargetGroup;
use crate::target::{ADDRESS_LABEL, INSTANCE_LABEL};

type LabelSet = BTreeMap<String, String>;

const P: &str = "__meta_kubernetes_";

fn m(name: &str) -> String {
    format!("{P}{name}")
}

/// Prometheus' `strutil.SanitizeLabelName`: every character outside
/// `[a-zA-Z0-9_]` becomes `_`.
pub fn sanitize_label_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Go's `net.JoinHostPort`: IPv6 literals get brackets.
fn join_host_port(host: &str, port: impl std::fmt::Display) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `<prefix>_label_<name>` and `<prefix>_labelpresent_<name>` (same for
/// annotations) for every entry of `map`.
fn add_map(ls: &mut LabelSet, map: &BTreeMap<String, String>, value: &str, present: &str) {
    for (k, v) in map {
        let ln = sanitize_label_name(k);
        ls.insert(format!("{P}{value}{ln}"), v.clone());
        ls.insert(format!("{P}{present}{ln}"), "true".into());
    }
}

/// Builds the groups of `role` from the stores.
pub(crate) fn build(role: KubernetesRole, stores: &Stores, attach_node: bool) -> Vec<TargetGroup> {
    let groups: Vec<(String, LabelSet, Vec<LabelSet>)> = match role {
        KubernetesRole::Pod => stores
            .pods
            .values()
            .filter_map(|p| build_pod(p, stores, attach_node))
            .collect(),
        KubernetesRole::Node => stores.nodes.values().filter_map(build_node).collect(),
        KubernetesRole::Service => stores.services.values().map(build_service).collect(),
        KubernetesRole::Endpoints => stores
            .endpoints
            .values()
            .map(|e| build_endpoints(e, stores, attach_node))
            .collect(),
        KubernetesRole::EndpointSlice => stores
            .slices
            .values()
            .map(|e| build_endpointslice(e, stores, attach_node))
            .collect(),
        // Refused when the discovery starts; nothing to build.
        KubernetesRole::Ingress => Vec::new(),
    };
    groups
        .into_iter()
        .filter(|(_, _, t)| !t.is_empty())
        .map(|(source, labels, targets)| {
            let mut addrs = Vec::with_capacity(targets.len());
            let mut tl = Vec::with_capacity(targets.len());
            for mut t in targets {
                addrs.push(t.remove(ADDRESS_LABEL).unwrap_or_default());
                tl.push(t);
            }
            TargetGroup {
                targets: addrs,
                target_labels: tl,
                labels,
                source,
            }
        })
        .collect()
}

// --- pod -----------------------------------------------------------------

fn pod_ready(p: &Pod) -> String {
    p.status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.to_lowercase())
        .unwrap_or_else(|| "unknown".into())
}

/// The labels every pod-derived target carries (Prometheus' `podLabels`).
fn pod_labels(p: &Pod) -> LabelSet {
    let mut ls = LabelSet::new();
    ls.insert(m("pod_name"), p.metadata.name.clone());
    ls.insert(m("pod_ip"), p.status.pod_ip.clone());
    ls.insert(m("pod_ready"), pod_ready(p));
    ls.insert(m("pod_phase"), p.status.phase.clone());
    ls.insert(m("pod_node_name"), p.spec.node_name.clone());
    ls.insert(m("pod_host_ip"), p.status.host_ip.clone());
    ls.insert(m("pod_uid"), p.metadata.uid.clone());
    if let Some(c) = p
        .metadata
        .owner_references
        .iter()
        .find(|r| r.controller == Some(true))
    {
        if !c.kind.is_empty() {
            ls.insert(m("pod_controller_kind"), c.kind.clone());
        }
        if !c.name.is_empty() {
            ls.insert(m("pod_controller_name"), c.name.clone());
        }
    }
    add_map(
        &mut ls,
        &p.metadata.labels,
        "pod_label_",
        "pod_labelpresent_",
    );
    add_map(
        &mut ls,
        &p.metadata.annotations,
        "pod_annotation_",
        "pod_annotationpresent_",
    );
    ls
}

/// `attach_metadata: {node: true}`: the node's name and labels.
fn add_node_labels(ls: &mut LabelSet, stores: &Stores, node_name: Option<&str>) {
    let Some(name) = node_name else { return };
    let Some(node) = stores.nodes.get(name) else {
        return;
    };
    ls.insert(m("node_name"), name.to_string());
    add_map(
        ls,
        &node.metadata.labels,
        "node_label_",
        "node_labelpresent_",
    );
}

fn build_pod(
    p: &Pod,
    stores: &Stores,
    attach_node: bool,
) -> Option<(String, LabelSet, Vec<LabelSet>)> {
    let source = format!("pod/{}/{}", p.metadata.namespace, p.metadata.name);
    // The pod IP is empty while a pod starts or after eviction.
    if p.status.pod_ip.is_empty() {
        return None;
    }
    let mut labels = pod_labels(p);
    labels.insert(m("namespace"), p.metadata.namespace.clone());
    if attach_node {
        add_node_labels(&mut labels, stores, Some(&p.spec.node_name));
    }
    let ip = &p.status.pod_ip;
    let mut targets = Vec::new();
    let all = p
        .spec
        .containers
        .iter()
        .map(|c| (c, false))
        .chain(p.spec.init_containers.iter().map(|c| (c, true)));
    for (c, is_init) in all {
        let statuses = if is_init {
            &p.status.init_container_statuses
        } else {
            &p.status.container_statuses
        };
        let cid = statuses
            .iter()
            .find(|s| s.name == c.name)
            .map(|s| s.container_id.clone())
            .unwrap_or_default();
        let mut base = LabelSet::new();
        base.insert(m("pod_container_name"), c.name.clone());
        base.insert(m("pod_container_id"), cid);
        base.insert(m("pod_container_image"), c.image.clone());
        base.insert(m("pod_container_init"), is_init.to_string());
        if c.ports.is_empty() {
            // No port: the bare pod IP; relabeling has to add one.
            let mut t = base;
            t.insert(ADDRESS_LABEL.into(), ip.clone());
            targets.push(t);
            continue;
        }
        for port in &c.ports {
            let mut t = base.clone();
            t.insert(
                ADDRESS_LABEL.into(),
                join_host_port(ip, port.container_port),
            );
            t.insert(
                m("pod_container_port_number"),
                port.container_port.to_string(),
            );
            t.insert(m("pod_container_port_name"), port.name.clone());
            t.insert(m("pod_container_port_protocol"), port.protocol.clone());
            targets.push(t);
        }
    }
    Some((source, labels, targets))
}

// --- node ----------------------------------------------------------------

/// The address priority of Prometheus' `nodeAddress`.
const NODE_ADDRESS_ORDER: [&str; 6] = [
    "InternalIP",
    "InternalDNS",
    "ExternalIP",
    "ExternalDNS",
    "LegacyHostIP",
    "Hostname",
];

fn build_node(n: &Node) -> Option<(String, LabelSet, Vec<LabelSet>)> {
    let source = format!("node/{}", n.metadata.name);
    let mut labels = LabelSet::new();
    labels.insert(m("node_name"), n.metadata.name.clone());
    labels.insert(m("node_provider_id"), n.spec.provider_id.clone());
    add_map(
        &mut labels,
        &n.metadata.labels,
        "node_label_",
        "node_labelpresent_",
    );
    add_map(
        &mut labels,
        &n.metadata.annotations,
        "node_annotation_",
        "node_annotationpresent_",
    );
    // First address of each type.
    let mut by_type: BTreeMap<&str, &str> = BTreeMap::new();
    for a in &n.status.addresses {
        by_type
            .entry(a.type_.as_str())
            .or_insert(a.address.as_str());
    }
    let Some(addr) = NODE_ADDRESS_ORDER.iter().find_map(|t| by_type.get(t)) else {
        tracing::warn!(node = %n.metadata.name, "kubernetes_sd: no node address found");
        return None;
    };
    let mut t = LabelSet::new();
    t.insert(
        ADDRESS_LABEL.into(),
        join_host_port(addr, n.status.daemon_endpoints.kubelet_endpoint.port),
    );
    t.insert(INSTANCE_LABEL.into(), n.metadata.name.clone());
    for (ty, a) in &by_type {
        t.insert(
            sanitize_label_name(&m(&format!("node_address_{ty}"))),
            a.to_string(),
        );
    }
    Some((source, labels, vec![t]))
}

// --- service -------------------------------------------------------------

fn service_labels(s: &Service) -> LabelSet {
    let mut ls = LabelSet::new();
    ls.insert(m("service_name"), s.metadata.name.clone());
    ls.insert(m("namespace"), s.metadata.namespace.clone());
    add_map(
        &mut ls,
        &s.metadata.labels,
        "service_label_",
        "service_labelpresent_",
    );
    add_map(
        &mut ls,
        &s.metadata.annotations,
        "service_annotation_",
        "service_annotationpresent_",
    );
    ls
}

fn build_service(s: &Service) -> (String, LabelSet, Vec<LabelSet>) {
    let source = format!("svc/{}/{}", s.metadata.namespace, s.metadata.name);
    let labels = service_labels(s);
    let host = format!("{}.{}.svc", s.metadata.name, s.metadata.namespace);
    let targets = s
        .spec
        .ports
        .iter()
        .map(|port| {
            let mut t = LabelSet::new();
            t.insert(ADDRESS_LABEL.into(), join_host_port(&host, port.port));
            t.insert(m("service_port_name"), port.name.clone());
            t.insert(m("service_port_number"), port.port.to_string());
            t.insert(m("service_port_protocol"), port.protocol.clone());
            t.insert(m("service_type"), s.spec.type_.clone());
            if s.spec.type_ == "ExternalName" {
                t.insert(m("service_external_name"), s.spec.external_name.clone());
            } else {
                t.insert(m("service_cluster_ip"), s.spec.cluster_ip.clone());
            }
            if s.spec.type_ == "LoadBalancer" {
                t.insert(
                    m("service_loadbalancer_ip"),
                    s.spec.load_balancer_ip.clone(),
                );
            }
            t
        })
        .collect();
    (source, labels, targets)
}

// --- endpoints and endpointslice -------------------------------------------

fn resolve_pod<'a>(stores: &'a Stores, r: Option<&ObjectReference>) -> Option<&'a Pod> {
    let r = r.filter(|r| r.kind == "Pod")?;
    stores.pods.get(&format!("{}/{}", r.namespace, r.name))
}

/// Container ports of pods an endpoint points at that no endpoint port
/// covers get their own targets (both endpoint roles do this).
fn uncovered_ports(seen: &BTreeMap<String, (&Pod, Vec<i32>)>, targets: &mut Vec<LabelSet>) {
    for (pod, ports) in seen.values() {
        for c in &pod.spec.containers {
            for cp in &c.ports {
                if ports.contains(&cp.container_port) {
                    continue;
                }
                let mut t = pod_labels(pod);
                t.insert(
                    ADDRESS_LABEL.into(),
                    join_host_port(&pod.status.pod_ip, cp.container_port),
                );
                t.insert(m("pod_container_name"), c.name.clone());
                t.insert(m("pod_container_image"), c.image.clone());
                t.insert(m("pod_container_port_name"), cp.name.clone());
                t.insert(
                    m("pod_container_port_number"),
                    cp.container_port.to_string(),
                );
                t.insert(m("pod_container_port_protocol"), cp.protocol.clone());
                targets.push(t);
            }
        }
    }
}

/// The pod's labels and, when a container port equals `port`, that
/// container's labels (`protocol` is what the caller's role uses).
fn add_pod_target_labels(t: &mut LabelSet, pod: &Pod, port: i32, protocol: Option<&str>) {
    t.extend(pod_labels(pod));
    for c in &pod.spec.containers {
        if let Some(cp) = c.ports.iter().find(|cp| cp.container_port == port) {
            t.insert(m("pod_container_name"), c.name.clone());
            t.insert(m("pod_container_image"), c.image.clone());
            t.insert(m("pod_container_port_name"), cp.name.clone());
            t.insert(m("pod_container_port_number"), port.to_string());
            t.insert(
                m("pod_container_port_protocol"),
                protocol.unwrap_or(&cp.protocol).to_string(),
            );
        }
    }
}

fn build_endpoints(
    e: &Endpoints,
    stores: &Stores,
    attach_node: bool,
) -> (String, LabelSet, Vec<LabelSet>) {
    let ns = &e.metadata.namespace;
    let source = format!("endpoints/{ns}/{}", e.metadata.name);
    let mut labels = LabelSet::new();
    labels.insert(m("namespace"), ns.clone());
    labels.insert(m("endpoints_name"), e.metadata.name.clone());
    if let Some(svc) = stores.services.get(&format!("{ns}/{}", e.metadata.name)) {
        labels.extend(service_labels(svc));
    }
    add_map(
        &mut labels,
        &e.metadata.labels,
        "endpoints_label_",
        "endpoints_labelpresent_",
    );
    let mut seen: BTreeMap<String, (&Pod, Vec<i32>)> = BTreeMap::new();
    let mut targets = Vec::new();
    for ss in &e.subsets {
        for port in &ss.ports {
            let addrs = ss
                .addresses
                .iter()
                .map(|a| (a, "true"))
                .chain(ss.not_ready_addresses.iter().map(|a| (a, "false")));
            for (addr, ready) in addrs {
                let mut t = LabelSet::new();
                t.insert(ADDRESS_LABEL.into(), join_host_port(&addr.ip, port.port));
                t.insert(m("endpoint_port_name"), port.name.clone());
                t.insert(m("endpoint_port_protocol"), port.protocol.clone());
                t.insert(m("endpoint_ready"), ready.into());
                if let Some(r) = &addr.target_ref {
                    t.insert(m("endpoint_address_target_kind"), r.kind.clone());
                    t.insert(m("endpoint_address_target_name"), r.name.clone());
                }
                if let Some(n) = &addr.node_name {
                    t.insert(m("endpoint_node_name"), n.clone());
                }
                if !addr.hostname.is_empty() {
                    t.insert(m("endpoint_hostname"), addr.hostname.clone());
                }
                if attach_node {
                    add_node_labels(&mut t, stores, addr.node_name.as_deref());
                }
                if let Some(pod) = resolve_pod(stores, addr.target_ref.as_ref()) {
                    let key = pod.metadata.key();
                    seen.entry(key)
                        .or_insert((pod, Vec::new()))
                        .1
                        .push(port.port);
                    // Endpoints use the endpoint port's protocol here.
                    add_pod_target_labels(&mut t, pod, port.port, Some(&port.protocol));
                }
                targets.push(t);
            }
        }
    }
    uncovered_ports(&seen, &mut targets);
    (source, labels, targets)
}

fn build_endpointslice(
    e: &EndpointSlice,
    stores: &Stores,
    attach_node: bool,
) -> (String, LabelSet, Vec<LabelSet>) {
    let ns = &e.metadata.namespace;
    let source = format!("endpointslice/{ns}/{}", e.metadata.name);
    let mut labels = LabelSet::new();
    labels.insert(m("namespace"), ns.clone());
    labels.insert(m("endpointslice_name"), e.metadata.name.clone());
    labels.insert(m("endpointslice_address_type"), e.address_type.clone());
    // Every slice names its service in this label.
    if let Some(svc_name) = e.metadata.labels.get("kubernetes.io/service-name") {
        if let Some(svc) = stores.services.get(&format!("{ns}/{svc_name}")) {
            labels.extend(service_labels(svc));
        }
    }
    let mut seen: BTreeMap<String, (&Pod, Vec<i32>)> = BTreeMap::new();
    let mut targets = Vec::new();
    for ep in &e.endpoints {
        for port in &e.ports {
            for addr in &ep.addresses {
                let mut t = slice_target(addr, ep, port);
                if attach_node {
                    add_node_labels(&mut t, stores, ep.node_name.as_deref());
                }
                if let Some(pod) = resolve_pod(stores, ep.target_ref.as_ref()) {
                    let entry = seen.entry(pod.metadata.key()).or_insert((pod, Vec::new()));
                    if let Some(p) = port.port {
                        entry.1.push(p);
                        add_pod_target_labels(&mut t, pod, p, None);
                    } else {
                        t.extend(pod_labels(pod));
                    }
                }
                targets.push(t);
            }
        }
    }
    uncovered_ports(&seen, &mut targets);
    (source, labels, targets)
}

fn slice_target(addr: &str, ep: &super::objects::SliceEndpoint, port: &SlicePort) -> LabelSet {
    let mut t = LabelSet::new();
    let a = match port.port {
        Some(p) => join_host_port(addr, p),
        None => addr.to_string(),
    };
    t.insert(ADDRESS_LABEL.into(), a);
    if let Some(n) = &port.name {
        t.insert(m("endpointslice_port_name"), n.clone());
    }
    if let Some(p) = &port.protocol {
        t.insert(m("endpointslice_port_protocol"), p.clone());
    }
    if let Some(p) = port.port {
        t.insert(m("endpointslice_port"), p.to_string());
    }
    if let Some(p) = &port.app_protocol {
        t.insert(m("endpointslice_port_app_protocol"), p.clone());
    }
    let c = &ep.conditions;
    for (name, v) in [
        ("ready", c.ready),
        ("serving", c.serving),
        ("terminating", c.terminating),
    ] {
        if let Some(v) = v {
            t.insert(
                m(&format!("endpointslice_endpoint_conditions_{name}")),
                v.to_string(),
            );
        }
    }
    if let Some(h) = &ep.hostname {
        t.insert(m("endpointslice_endpoint_hostname"), h.clone());
    }
    if let Some(r) = &ep.target_ref {
        t.insert(m("endpointslice_address_target_kind"), r.kind.clone());
        t.insert(m("endpointslice_address_target_name"), r.name.clone());
    }
    for (k, v) in &ep.deprecated_topology {
        let ln = sanitize_label_name(k);
        t.insert(
            m(&format!("endpointslice_endpoint_topology_{ln}")),
            v.clone(),
        );
        t.insert(
            m(&format!("endpointslice_endpoint_topology_present_{ln}")),
            "true".into(),
        );
    }
    t
}
