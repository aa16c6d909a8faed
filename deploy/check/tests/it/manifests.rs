//! The kustomize overlays, rendered by `kubectl kustomize` and validated by
//! kubernetes-validate (strict, Kubernetes 1.37), then read back to check
//! what the schema cannot: that the containers' flags exist in strata, the
//! prometheus.yml loads with strata's own config loader, the TLS files are
//! where the flags say, the querier has one endpoint per cluster, and
//! Grafana points at the querier.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use strata_deploy_check::deploy_dir;

use crate::util::{docs, find, read, render, repo_root, run, str_of, tool};

const OVERLAYS: &[&str] = &["cluster1", "cluster2", "global"];
const CLUSTERS: &[&str] = &["cluster1", "cluster2"];
/// The newest schema kubernetes-validate 1.37.0 bundles.
const K8S_VERSION: &str = "1.37.0";

/// `strata query` is being written alongside; until src/cmd_query.rs
/// exists, its flags are checked against the Thanos names it adopts.
const QUERY_FLAGS_THANOS: &[&str] = &[
    "http-address",
    "grpc-address",
    "endpoint",
    "query.replica-label",
    "grpc-client-tls-secure",
    "grpc-client-tls-cert",
    "grpc-client-tls-key",
    "grpc-client-tls-ca",
    "grpc-client-server-name",
    "grpc-server-tls-cert",
    "grpc-server-tls-key",
    "grpc-server-tls-client-ca",
];

#[test]
fn overlays_render_and_validate_strictly_against_the_kubernetes_schema() {
    let dir = tempfile::tempdir().unwrap();
    for o in OVERLAYS {
        let text = render(o);
        let kinds: BTreeSet<String> = docs(&text)
            .iter()
            .map(|d| str_of(&d["kind"]).to_string())
            .collect();
        let want: &[&str] = if *o == "global" {
            &["Namespace", "Deployment", "Service", "ConfigMap", "Secret"]
        } else {
            &[
                "Namespace",
                "StatefulSet",
                "Service",
                "ConfigMap",
                "Secret",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
            ]
        };
        for k in want {
            assert!(kinds.contains(*k), "{o}: no {k} rendered (have {kinds:?})");
        }
        let file = dir.path().join(format!("{o}.yaml"));
        std::fs::write(&file, &text).unwrap();
        let mut cmd = Command::new(tool("kubernetes-validate"));
        cmd.args(["--strict", "--no-warn", "--kubernetes-version", K8S_VERSION])
            .arg(&file);
        let out = run(cmd, Duration::from_secs(120));
        assert!(
            out.success,
            "{o} does not validate against Kubernetes {K8S_VERSION}:\n{}{}",
            out.stdout, out.stderr
        );
        assert!(!out.stdout.contains("ERROR"), "{o}: {}", out.stdout);
    }
}

/// kubernetes-validate really rejects what the API server would (the
/// validation step is not vacuous): an unknown field fails.
#[test]
fn the_validator_rejects_an_unknown_field() {
    let text = render("cluster1").replacen(
        "serviceName: strata",
        "serviceName: strata\n  serviceNme: typo",
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, text).unwrap();
    let mut cmd = Command::new(tool("kubernetes-validate"));
    cmd.args(["--strict", "--no-warn", "--kubernetes-version", K8S_VERSION])
        .arg(&file);
    let out = run(cmd, Duration::from_secs(120));
    assert!(!out.success, "a typo validated:\n{}", out.stdout);
    assert!(
        out.stdout.contains("serviceNme"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

fn containers(workload: &Value) -> &Vec<Value> {
    workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
}

fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    containers(workload)
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn args(c: &Value) -> Vec<String> {
    c["args"]
        .as_array()
        .map(|a| a.iter().map(|x| str_of(x).to_string()).collect())
        .unwrap_or_default()
}

/// The value of `--flag=value` in `args` (the manifests always use `=`).
fn flag(args: &[String], name: &str) -> Option<String> {
    let prefix = format!("--{name}=");
    args.iter()
        .find_map(|a| a.strip_prefix(&prefix).map(str::to_string))
}

fn mount_path(c: &Value, volume: &str) -> String {
    c["volumeMounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == volume))
        .map(|m| str_of(&m["mountPath"]).to_string())
        .unwrap_or_else(|| panic!("container {} does not mount {volume}", c["name"]))
}

fn volume<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no volume {name}"))
}

fn container_port(c: &Value, name: &str) -> i64 {
    c["ports"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == name))
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("container {} has no port {name}", c["name"]))
}

fn port_of(addr: &str) -> i64 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr}"))
}

#[test]
fn tsdb_and_sidecar_share_one_volume_and_address_each_other() {
    for c in CLUSTERS {
        let d = docs(&render(c));
        let sts = find(&d, "StatefulSet", "strata");
        let tsdb = container(sts, "tsdb");
        let sidecar = container(sts, "sidecar");
        let (ta, sa) = (args(tsdb), args(sidecar));
        assert_eq!(ta[0], "tsdb");
        assert_eq!(sa[0], "sidecar");
        let data = mount_path(tsdb, "data");
        assert_eq!(
            mount_path(sidecar, "data"),
            data,
            "{c}: one volume, one path"
        );
        assert_eq!(
            flag(&ta, "storage.tsdb.path").as_deref(),
            Some(data.as_str())
        );
        assert_eq!(flag(&sa, "tsdb.path").as_deref(), Some(data.as_str()));
        let claim = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"].as_str();
        assert_eq!(
            claim,
            Some("data"),
            "{c}: data is a persistent volume claim"
        );
        // The sidecar reads the TSDB over localhost at its listen port.
        let web = flag(&ta, "web.listen-address").unwrap();
        assert_eq!(
            flag(&sa, "prometheus.url").unwrap(),
            format!("http://localhost:{}", port_of(&web))
        );
        assert_eq!(container_port(tsdb, "http"), port_of(&web));
        // Level-1 2h blocks only: what the sidecar uploads.
        assert_eq!(
            flag(&ta, "storage.tsdb.min-block-duration").as_deref(),
            Some("2h")
        );
        assert_eq!(
            flag(&ta, "storage.tsdb.max-block-duration").as_deref(),
            Some("2h")
        );
        // The config file is the mounted ConfigMap, generated by this overlay.
        let cfg = flag(&ta, "config.file").unwrap();
        let dir = mount_path(tsdb, "config");
        assert_eq!(cfg, format!("{dir}/prometheus.yml"));
        let cm_name = str_of(&volume(sts, "config")["configMap"]["name"]);
        let cm = find(&d, "ConfigMap", "strata-prometheus-config");
        assert_eq!(
            cm["metadata"]["name"], cm_name,
            "{c}: the volume uses the generated name"
        );
        // The objstore file is in the mounted Secret.
        let obj = flag(&sa, "objstore.config-file").unwrap();
        assert_eq!(
            obj,
            format!("{}/objstore.yml", mount_path(sidecar, "objstore"))
        );
        let secret = find(&d, "Secret", "strata-objstore");
        assert_eq!(
            volume(sts, "objstore")["secret"]["secretName"],
            secret["metadata"]["name"]
        );
        assert!(
            secret["data"]["objstore.yml"].is_string(),
            "{c}: objstore.yml key"
        );
    }
}

#[test]
fn prometheus_config_loads_with_strata_and_names_its_cluster() {
    let mut texts = BTreeMap::new();
    for c in CLUSTERS {
        let d = docs(&render(c));
        let cm = find(&d, "ConfigMap", "strata-prometheus-config");
        let text = str_of(&cm["data"]["prometheus.yml"]).to_string();
        let cfg = strata_scrape::config::Config::load(&text)
            .unwrap_or_else(|e| panic!("{c}/prometheus.yml does not load in strata: {e}"));
        assert_eq!(cfg.global.external_labels.get("cluster"), Some(*c));
        let jobs: BTreeMap<_, _> = cfg
            .scrape_configs
            .iter()
            .map(|j| (j.job_name.as_str(), j))
            .collect();
        for (job, role) in [
            ("kubernetes-apiservers", "endpoints"),
            ("kubernetes-nodes", "node"),
            ("kubernetes-cadvisor", "node"),
            ("kubernetes-service-endpoints", "endpoints"),
            ("kubernetes-pods", "pod"),
        ] {
            let j = jobs.get(job).unwrap_or_else(|| panic!("{c}: no job {job}"));
            assert_eq!(j.kubernetes_sd_configs.len(), 1, "{c}/{job}");
            assert_eq!(j.kubernetes_sd_configs[0].role.as_str(), role, "{c}/{job}");
            assert!(!j.relabel_configs.is_empty(), "{c}/{job}: relabel_configs");
        }
        texts.insert(*c, text);
    }
    // The clusters' files differ only where they name their cluster.
    let a: Vec<_> = texts["cluster1"].lines().collect();
    let b: Vec<_> = texts["cluster2"].lines().collect();
    assert_eq!(
        a.len(),
        b.len(),
        "cluster1 and cluster2 prometheus.yml drifted apart"
    );
    for (x, y) in a.iter().zip(&b) {
        if x != y {
            assert_eq!(
                x.replace("cluster1", "cluster2"),
                **y,
                "prometheus.yml drifted apart"
            );
        }
    }
}

#[test]
fn cluster_grpc_is_a_load_balancer_with_mutual_tls() {
    for c in CLUSTERS {
        let d = docs(&render(c));
        let sts = find(&d, "StatefulSet", "strata");
        let tsdb = container(sts, "tsdb");
        let ta = args(tsdb);
        let svc = find(&d, "Service", "strata-grpc");
        assert_eq!(svc["spec"]["type"], "LoadBalancer");
        let ports = svc["spec"]["ports"].as_array().unwrap();
        assert_eq!(ports.len(), 1, "{c}: only gRPC is exposed");
        assert_eq!(ports[0]["targetPort"], "grpc");
        // The exposed port is the TSDB's own StoreAPI / Query API.
        assert_eq!(
            container_port(tsdb, "grpc"),
            port_of(&flag(&ta, "grpc-address").unwrap())
        );
        // The selector picks the StatefulSet's pods.
        let labels = &sts["spec"]["template"]["metadata"]["labels"];
        for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
            assert_eq!(&labels[k], v, "{c}: selector {k}");
        }
        // Mutual TLS on every gRPC server of the pod: the TSDB's (exposed)
        // and the sidecar's (in the pod only, on its own port).
        let sidecar = container(sts, "sidecar");
        let sa = args(sidecar);
        assert_ne!(
            port_of(&flag(&sa, "grpc-address").unwrap()),
            port_of(&flag(&ta, "grpc-address").unwrap()),
            "{c}: one pod, two gRPC servers"
        );
        for (cont, a) in [(tsdb, &ta), (sidecar, &sa)] {
            let tls = mount_path(cont, "tls");
            for (f, key) in [
                ("grpc-server-tls-cert", "tls.crt"),
                ("grpc-server-tls-key", "tls.key"),
                ("grpc-server-tls-client-ca", "ca.crt"),
            ] {
                assert_eq!(flag(a, f), Some(format!("{tls}/{key}")), "{c}: --{f}");
            }
        }
        assert_eq!(
            volume(sts, "tls")["secret"]["secretName"],
            "strata-sidecar-tls"
        );
    }
}

#[test]
fn rbac_allows_kubernetes_service_discovery() {
    for c in CLUSTERS {
        let d = docs(&render(c));
        let sts = find(&d, "StatefulSet", "strata");
        let sa_name = str_of(&sts["spec"]["template"]["spec"]["serviceAccountName"]);
        let ns = str_of(&sts["metadata"]["namespace"]);
        let sa = find(&d, "ServiceAccount", sa_name);
        assert_eq!(sa["metadata"]["namespace"], ns);
        let role = find(&d, "ClusterRole", "strata-tsdb");
        let rules = role["rules"].as_array().unwrap();
        let allowed = |group: &str, res: &str| {
            rules.iter().any(|r| {
                let has =
                    |k: &str, v: &str| r[k].as_array().is_some_and(|a| a.iter().any(|x| x == v));
                has("apiGroups", group)
                    && has("resources", res)
                    && ["get", "list", "watch"].iter().all(|v| has("verbs", v))
            })
        };
        for res in ["nodes", "nodes/proxy", "services", "endpoints", "pods"] {
            assert!(allowed("", res), "{c}: cannot get/list/watch {res}");
        }
        assert!(
            allowed("discovery.k8s.io", "endpointslices"),
            "{c}: endpointslices"
        );
        assert!(
            rules.iter().any(|r| r["nonResourceURLs"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "/metrics"))),
            "{c}: /metrics"
        );
        let binding = find(&d, "ClusterRoleBinding", "strata-tsdb");
        assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
        let subj = &binding["subjects"][0];
        assert_eq!(
            (
                subj["kind"].as_str(),
                subj["name"].as_str(),
                subj["namespace"].as_str()
            ),
            (Some("ServiceAccount"), Some(sa_name), Some(ns))
        );
    }
}

/// The `long = "..."` flag names of a `src/cmd_*.rs` file, with those of
/// the flag groups it flattens in (`src/grpc_tls.rs`).
fn declared_flags(sub: &str) -> Option<BTreeSet<String>> {
    let mut src = std::fs::read_to_string(repo_root().join(format!("src/cmd_{sub}.rs"))).ok()?;
    if src.contains("GrpcServerTlsArgs") {
        src += &std::fs::read_to_string(repo_root().join("src/grpc_tls.rs")).ok()?;
    }
    let mut out = BTreeSet::new();
    for part in src.split("long = \"").skip(1) {
        if let Some(end) = part.find('"') {
            out.insert(part[..end].to_string());
        }
    }
    Some(out)
}

#[test]
fn every_strata_flag_in_the_manifests_exists() {
    let mut checked = 0;
    for o in OVERLAYS {
        let d = docs(&render(o));
        for w in d
            .iter()
            .filter(|d| d["kind"] == "StatefulSet" || d["kind"] == "Deployment")
        {
            for c in containers(w) {
                if !str_of(&c["image"]).contains("strata") {
                    continue;
                }
                let a = args(c);
                let sub = a[0].as_str();
                let known = match (declared_flags(sub), sub) {
                    (Some(f), _) => f,
                    (None, "query") => QUERY_FLAGS_THANOS.iter().map(|s| s.to_string()).collect(),
                    (None, _) => panic!("{o}: no src/cmd_{sub}.rs for `strata {sub}`"),
                };
                for arg in &a[1..] {
                    let name = arg
                        .strip_prefix("--")
                        .unwrap_or_else(|| panic!("{o}: argument {arg:?} is not a flag"));
                    let name = name.split('=').next().unwrap();
                    assert!(
                        known.contains(name),
                        "{o}: `strata {sub}` has no flag --{name}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 20, "only {checked} flags checked");
}

#[test]
fn every_container_is_limited_hardened_and_probed() {
    for o in OVERLAYS {
        let d = docs(&render(o));
        for w in d
            .iter()
            .filter(|d| d["kind"] == "StatefulSet" || d["kind"] == "Deployment")
        {
            let name = str_of(&w["metadata"]["name"]);
            let pod = &w["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{o}/{name}");
            assert!(
                pod["securityContext"]["runAsUser"].as_i64().unwrap_or(0) > 0,
                "{o}/{name}: runAsUser"
            );
            for c in containers(w) {
                let id = format!("{o}/{name}/{}", str_of(&c["name"]));
                let sc = &c["securityContext"];
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{id}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{id}");
                assert!(
                    sc["capabilities"]["drop"]
                        .as_array()
                        .is_some_and(|d| d.iter().any(|x| x == "ALL")),
                    "{id}"
                );
                let r = &c["resources"];
                assert!(
                    r["requests"]["cpu"].is_string() && r["requests"]["memory"].is_string(),
                    "{id}: requests"
                );
                assert!(r["limits"]["memory"].is_string(), "{id}: memory limit");
                assert!(
                    c["readinessProbe"]["httpGet"]["path"].is_string(),
                    "{id}: readiness probe"
                );
                assert!(
                    c["livenessProbe"]["httpGet"]["path"].is_string(),
                    "{id}: liveness probe"
                );
                if !str_of(&c["image"]).contains("strata") {
                    continue;
                }
                // strata serves /-/ready and /-/healthy on its HTTP port,
                // the port named by the listen flag.
                assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/-/ready", "{id}");
                assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/-/healthy", "{id}");
                let a = args(c);
                let addr = flag(&a, "web.listen-address")
                    .or_else(|| flag(&a, "http-address"))
                    .unwrap();
                let port_name = str_of(&c["readinessProbe"]["httpGet"]["port"]);
                assert_eq!(
                    container_port(c, port_name),
                    port_of(&addr),
                    "{id}: probe port"
                );
                assert_eq!(c["livenessProbe"]["httpGet"]["port"], port_name, "{id}");
            }
        }
    }
}

#[test]
fn the_querier_has_one_mtls_endpoint_per_cluster() {
    let d = docs(&render("global"));
    let dep = find(&d, "Deployment", "strata-query");
    let q = container(dep, "query");
    let a = args(q);
    assert_eq!(a[0], "query");
    let endpoints: Vec<_> = a
        .iter()
        .filter_map(|x| x.strip_prefix("--endpoint="))
        .collect();
    assert_eq!(
        endpoints.len(),
        CLUSTERS.len(),
        "one --endpoint per cluster overlay"
    );
    let cm = find(&d, "ConfigMap", "strata-query-endpoints");
    let env = q["env"].as_array().unwrap();
    for e in &endpoints {
        // --endpoint=$(VAR): VAR comes from the endpoints ConfigMap.
        let var = e
            .strip_prefix("$(")
            .and_then(|v| v.strip_suffix(')'))
            .unwrap_or_else(|| panic!("--endpoint={e} is not $(VAR)"));
        let ev = env
            .iter()
            .find(|x| x["name"] == var)
            .unwrap_or_else(|| panic!("no env {var}"));
        let r = &ev["valueFrom"]["configMapKeyRef"];
        assert_eq!(r["name"], cm["metadata"]["name"]);
        assert_eq!(r["key"], var);
        let addr = str_of(&cm["data"][var]);
        assert_eq!(
            port_of(addr),
            10901,
            "{var}={addr}: the cluster's gRPC port"
        );
    }
    assert_eq!(flag(&a, "query.replica-label").as_deref(), Some("replica"));
    assert!(a.iter().any(|x| x == "--grpc-client-tls-secure"));
    let tls = mount_path(q, "tls");
    for (f, key) in [
        ("grpc-client-tls-cert", "tls.crt"),
        ("grpc-client-tls-key", "tls.key"),
        ("grpc-client-tls-ca", "ca.crt"),
    ] {
        assert_eq!(flag(&a, f), Some(format!("{tls}/{key}")), "--{f}");
    }
    assert!(flag(&a, "grpc-client-server-name").is_some());
    assert_eq!(
        volume(dep, "tls")["secret"]["secretName"],
        "strata-query-tls"
    );
    let svc = find(&d, "Service", "strata-query");
    let http = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "http")
        .unwrap();
    assert_eq!(
        http["port"].as_i64(),
        Some(port_of(&flag(&a, "http-address").unwrap()))
    );
}

#[test]
fn grafana_is_provisioned_with_the_querier_and_the_dashboard() {
    let d = docs(&render("global"));
    let g = find(&d, "Deployment", "grafana");
    let c = container(g, "grafana");
    // Datasource: the querier Service, at its HTTP port.
    let ds_cm = find(&d, "ConfigMap", "grafana-datasources");
    assert_eq!(
        volume(g, "datasources")["configMap"]["name"],
        ds_cm["metadata"]["name"]
    );
    assert_eq!(
        mount_path(c, "datasources"),
        "/etc/grafana/provisioning/datasources"
    );
    let ds: Value = serde_saphyr::from_str(str_of(&ds_cm["data"]["datasources.yaml"])).unwrap();
    let ds = &ds["datasources"][0];
    assert_eq!(ds["type"], "prometheus");
    let svc = find(&d, "Service", "strata-query");
    let port = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "http")
        .unwrap()["port"]
        .as_i64()
        .unwrap();
    assert_eq!(
        str_of(&ds["url"]),
        format!("http://{}:{port}", str_of(&svc["metadata"]["name"]))
    );
    // Dashboards: the provider's path is where the dashboards ConfigMap is
    // mounted, and that ConfigMap holds the dashboard file byte for byte.
    let prov_cm = find(&d, "ConfigMap", "grafana-dashboard-provider");
    assert_eq!(
        volume(g, "dashboard-provider")["configMap"]["name"],
        prov_cm["metadata"]["name"]
    );
    assert_eq!(
        mount_path(c, "dashboard-provider"),
        "/etc/grafana/provisioning/dashboards"
    );
    let prov: Value = serde_saphyr::from_str(str_of(&prov_cm["data"]["dashboards.yaml"])).unwrap();
    assert_eq!(
        str_of(&prov["providers"][0]["options"]["path"]),
        mount_path(c, "dashboards")
    );
    let dash_cm = find(&d, "ConfigMap", "strata-dashboards");
    assert_eq!(
        volume(g, "dashboards")["configMap"]["name"],
        dash_cm["metadata"]["name"]
    );
    assert_eq!(
        str_of(&dash_cm["data"]["strata-multicluster.json"]),
        read(&strata_deploy_check::multicluster_path())
    );
}

#[test]
fn the_objstore_secret_is_a_thanos_objstore_yml_with_marked_placeholders() {
    let text = read(&deploy_dir().join("objstore/objstore.yml"));
    let cfg = strata_bucket::config::ObjstoreConfig::parse(&text)
        .unwrap_or_else(|e| panic!("objstore.yml does not parse in strata: {e}"));
    assert_eq!(cfg.provider.type_name(), "S3");
    for key in ["access_key", "secret_key", "bucket", "endpoint"] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no {key}"));
        assert!(
            line.contains("PLACEHOLDER"),
            "{key} is not marked as a placeholder"
        );
    }
    // Rendered into both the clusters (the sidecars upload) and global.
    for o in OVERLAYS {
        let d = docs(&render(o));
        find(&d, "Secret", "strata-objstore");
    }
}
