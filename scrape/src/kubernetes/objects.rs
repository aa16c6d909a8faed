//! The Kubernetes API objects discovery reads, with only the fields the
//! meta labels need.
//!
//! Field names follow the API's JSON (camelCase, with the API's own
//! spellings such as `podIP` and `providerID`). Unknown fields are ignored,
//! missing ones default, and `null` where a list or map is expected reads
//! as empty, so a server that adds fields or writes `null` never breaks
//! discovery. Everything is owned and `Clone`, because objects live in the
//! discovery's stores between events.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// `null` → the type's default (serde's `default` only covers absence).
fn nd<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

type Map = BTreeMap<String, String>;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(deserialize_with = "nd")]
    pub name: String,
    #[serde(deserialize_with = "nd")]
    pub namespace: String,
    #[serde(deserialize_with = "nd")]
    pub uid: String,
    #[serde(deserialize_with = "nd")]
    pub resource_version: String,
    #[serde(deserialize_with = "nd")]
    pub labels: Map,
    #[serde(deserialize_with = "nd")]
    pub annotations: Map,
    #[serde(deserialize_with = "nd")]
    pub owner_references: Vec<OwnerReference>,
}

impl ObjectMeta {
    /// The store key: `namespace/name`, or `name` for cluster objects (as
    /// client-go's `MetaNamespaceKeyFunc`).
    pub fn key(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct OwnerReference {
    #[serde(deserialize_with = "nd")]
    pub kind: String,
    #[serde(deserialize_with = "nd")]
    pub name: String,
    pub controller: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(deserialize_with = "nd")]
    pub kind: String,
    #[serde(deserialize_with = "nd")]
    pub namespace: String,
    #[serde(deserialize_with = "nd")]
    pub name: String,
}

// --- Pod -------------------------------------------------------------------

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Pod {
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
    pub status: PodStatus,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(deserialize_with = "nd")]
    pub node_name: String,
    #[serde(deserialize_with = "nd")]
    pub containers: Vec<Container>,
    #[serde(deserialize_with = "nd")]
    pub init_containers: Vec<Container>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Container {
    #[serde(deserialize_with = "nd")]
    pub name: String,
    #[serde(deserialize_with = "nd")]
    pub image: String,
    #[serde(deserialize_with = "nd")]
    pub ports: Vec<ContainerPort>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(deserialize_with = "nd")]
    pub name: String,
    pub container_port: i32,
    #[serde(deserialize_with = "nd")]
    pub protocol: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(deserialize_with = "nd")]
    pub phase: String,
    #[serde(rename = "podIP", deserialize_with = "nd")]
    pub pod_ip: String,
    #[serde(rename = "hostIP", deserialize_with = "nd")]
    pub host_ip: String,
    #[serde(deserialize_with = "nd")]
    pub conditions: Vec<Condition>,
    #[serde(deserialize_with = "nd")]
    pub container_statuses: Vec<ContainerStatus>,
    #[serde(deserialize_with = "nd")]
    pub init_container_statuses: Vec<ContainerStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Condition {
    #[serde(rename = "type", deserialize_with = "nd")]
    pub type_: String,
    #[serde(deserialize_with = "nd")]
    pub status: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerStatus {
    #[serde(deserialize_with = "nd")]
    pub name: String,
    #[serde(rename = "containerID", deserialize_with = "nd")]
    pub container_id: String,
}

// --- Node ------------------------------------------------------------------

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Node {
    pub metadata: ObjectMeta,
    pub spec: NodeSpec,
    pub status: NodeStatus,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct NodeSpec {
    #[serde(rename = "providerID", deserialize_with = "nd")]
    pub provider_id: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeStatus {
    #[serde(deserialize_with = "nd")]
    pub addresses: Vec<NodeAddress>,
    pub daemon_endpoints: DaemonEndpoints,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct NodeAddress {
    #[serde(rename = "type", deserialize_with = "nd")]
    pub type_: String,
    #[serde(deserialize_with = "nd")]
    pub address: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct DaemonEndpoints {
    pub kubelet_endpoint: DaemonEndpoint,
}

/// The API really spells this field `Port`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct DaemonEndpoint {
    #[serde(rename = "Port")]
    pub port: i32,
}

// --- Service ---------------------------------------------------------------

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Service {
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(deserialize_with = "nd")]
    pub ports: Vec<ServicePort>,
    #[serde(rename = "type", deserialize_with = "nd")]
    pub type_: String,
    #[serde(rename = "clusterIP", deserialize_with = "nd")]
    pub cluster_ip: String,
    #[serde(deserialize_with = "nd")]
    pub external_name: String,
    #[serde(rename = "loadBalancerIP", deserialize_with = "nd")]
    pub load_balancer_ip: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ServicePort {
    #[serde(deserialize_with = "nd")]
    pub name: String,
    pub port: i32,
    #[serde(deserialize_with = "nd")]
    pub protocol: String,
}

// --- Endpoints -------------------------------------------------------------

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Endpoints {
    pub metadata: ObjectMeta,
    #[serde(deserialize_with = "nd")]
    pub subsets: Vec<EndpointSubset>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointSubset {
    #[serde(deserialize_with = "nd")]
    pub addresses: Vec<EndpointAddress>,
    #[serde(deserialize_with = "nd")]
    pub not_ready_addresses: Vec<EndpointAddress>,
    #[serde(deserialize_with = "nd")]
    pub ports: Vec<EndpointPort>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointAddress {
    #[serde(deserialize_with = "nd")]
    pub ip: String,
    #[serde(deserialize_with = "nd")]
    pub hostname: String,
    pub node_name: Option<String>,
    pub target_ref: Option<ObjectReference>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct EndpointPort {
    #[serde(deserialize_with = "nd")]
    pub name: String,
    pub port: i32,
    #[serde(deserialize_with = "nd")]
    pub protocol: String,
}

// --- EndpointSlice (discovery.k8s.io/v1) -----------------------------------

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointSlice {
    pub metadata: ObjectMeta,
    #[serde(deserialize_with = "nd")]
    pub address_type: String,
    #[serde(deserialize_with = "nd")]
    pub endpoints: Vec<SliceEndpoint>,
    #[serde(deserialize_with = "nd")]
    pub ports: Vec<SlicePort>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SliceEndpoint {
    #[serde(deserialize_with = "nd")]
    pub addresses: Vec<String>,
    pub conditions: SliceConditions,
    pub hostname: Option<String>,
    pub target_ref: Option<ObjectReference>,
    pub node_name: Option<String>,
    #[serde(deserialize_with = "nd")]
    pub deprecated_topology: Map,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SliceConditions {
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SlicePort {
    pub name: Option<String>,
    pub protocol: Option<String>,
    pub port: Option<i32>,
    pub app_protocol: Option<String>,
}

// --- Lists, watch events, status ---------------------------------------------

/// `metadata` of a list: where to continue paging and the version to
/// watch from.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ListMeta {
    #[serde(deserialize_with = "nd")]
    pub resource_version: String,
    #[serde(rename = "continue", deserialize_with = "nd")]
    pub continue_: String,
}

/// A `PodList`, `NodeList`, ...: the items stay raw JSON until the kind is
/// known.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct List {
    pub metadata: ListMeta,
    #[serde(deserialize_with = "nd")]
    pub items: Vec<serde_json::Value>,
}

/// One line of a watch stream.
#[derive(Debug, Deserialize)]
pub struct WatchEvent {
    #[serde(rename = "type")]
    pub type_: String,
    pub object: serde_json::Value,
}

/// A `Status` object, the body of failed requests and of `ERROR` events.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Status {
    #[serde(deserialize_with = "nd")]
    pub message: String,
    #[serde(deserialize_with = "nd")]
    pub reason: String,
    pub code: i64,
}
