//! Config files: every field, defaults, and errors with their positions.

use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_scrape::config::{Config, KubernetesRole, Scheme};
use strata_scrape::relabel::Action;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata")
        .join(name)
}

#[test]
fn good_file_every_field() {
    let path = testdata("good.yml");
    let cfg = Config::load_file(&path).unwrap();
    let dir = path.parent().unwrap();
    let g = &cfg.global;
    assert_eq!(g.scrape_interval, Duration::from_secs(15));
    assert_eq!(g.scrape_timeout, Duration::from_secs(5));
    assert_eq!(g.evaluation_interval, Duration::from_secs(30));
    assert_eq!(g.external_labels.get("region"), Some("eu-west"));
    assert_eq!(g.external_labels.get("replica"), Some("1"));
    assert_eq!(cfg.scrape_configs.len(), 3);

    let p = &cfg.scrape_configs[0];
    assert_eq!(p.job_name, "prometheus");
    assert!(p.honor_labels);
    assert!(!p.honor_timestamps);
    assert_eq!(p.scheme, Scheme::Https);
    assert_eq!(p.metrics_path, "/federate");
    assert_eq!(p.params["match[]"], vec!["{job=\"node\"}", "up"]);
    assert_eq!(p.scrape_interval, Duration::from_secs(30));
    assert_eq!(p.scrape_timeout, Duration::from_secs(20));
    assert_eq!(p.sample_limit, 1000);
    assert_eq!(p.body_size_limit, 10 << 20);
    assert_eq!(
        (
            p.label_limit,
            p.label_name_length_limit,
            p.label_value_length_limit
        ),
        (30, 200, 500)
    );
    assert!(!p.http.follow_redirects);
    assert!(!p.http.enable_http2);
    let tls = &p.http.tls_config;
    assert_eq!(
        tls.ca_file.as_deref(),
        Some(dir.join("certs/ca.pem").as_path())
    );
    assert_eq!(
        tls.cert_file.as_deref(),
        Some(Path::new("/etc/strata/client.pem"))
    );
    assert_eq!(
        tls.key_file.as_deref(),
        Some(Path::new("/etc/strata/client.key"))
    );
    assert_eq!(tls.server_name.as_deref(), Some("prom.internal"));
    assert!(!tls.insecure_skip_verify);
    let auth = p.http.authorization.as_ref().unwrap();
    assert_eq!(auth.r#type, "Token");
    assert_eq!(
        auth.credentials_file.as_deref(),
        Some(dir.join("secrets/token").as_path())
    );
    assert_eq!(p.static_configs.len(), 2);
    assert_eq!(
        p.static_configs[0].targets,
        vec!["localhost:9090", "prom-2:9090"]
    );
    assert_eq!(p.static_configs[0].labels["env"], "prod");
    assert_eq!(p.file_sd_configs.len(), 2);
    assert_eq!(
        p.file_sd_configs[0].files,
        vec![dir.join("targets/*.json"), dir.join("targets/extra.yml")]
    );
    assert_eq!(
        p.file_sd_configs[0].refresh_interval,
        Duration::from_secs(60)
    );
    assert_eq!(
        p.file_sd_configs[1].refresh_interval,
        Duration::from_secs(300)
    );
    assert_eq!(
        p.file_sd_configs[1].files,
        vec![PathBuf::from("/abs/path.yaml")]
    );
    let actions: Vec<Action> = p.relabel_configs.iter().map(|r| r.action).collect();
    assert_eq!(
        actions,
        vec![
            Action::Replace,
            Action::Replace,
            Action::LabelMap,
            Action::HashMod,
            Action::Keep,
            Action::KeepEqual,
            Action::DropEqual,
            Action::LabelDrop,
            Action::LabelKeep,
            Action::Lowercase,
            Action::Uppercase,
            Action::Drop,
        ]
    );
    let r0 = &p.relabel_configs[0];
    assert_eq!(
        (
            r0.separator.as_str(),
            r0.regex.as_str(),
            r0.replacement.as_str()
        ),
        (";", "(.*)", "$1")
    );
    assert_eq!(p.relabel_configs[3].modulus, 4);
    assert_eq!(p.relabel_configs[11].separator, "|");
    assert_eq!(p.metric_relabel_configs.len(), 1);

    let n = &cfg.scrape_configs[1];
    // Job defaults from global.
    assert_eq!(n.scrape_interval, Duration::from_secs(15));
    assert_eq!(n.scrape_timeout, Duration::from_secs(5));
    assert!(!n.honor_labels);
    assert!(n.honor_timestamps);
    assert_eq!(n.metrics_path, "/metrics");
    assert_eq!(n.scheme, Scheme::Http);
    assert!(n.http.follow_redirects && n.http.enable_http2);
    let ba = n.http.basic_auth.as_ref().unwrap();
    assert_eq!(ba.username, "admin");
    assert_eq!(
        ba.password_file.as_deref(),
        Some(dir.join("secrets/pw").as_path())
    );
    let k = &n.kubernetes_sd_configs;
    assert_eq!(k.len(), 4);
    assert_eq!(k[0].role, KubernetesRole::Endpoints);
    assert_eq!(k[0].namespaces.names, vec!["default", "monitoring"]);
    assert_eq!(k[0].selectors.len(), 2);
    assert_eq!(k[0].selectors[0].role, KubernetesRole::Pod);
    assert_eq!(k[0].selectors[1].field, "metadata.name=node");
    assert!(k[0].attach_metadata_node);
    assert_eq!(
        k[1].api_server.as_deref(),
        Some("https://k8s.example.com:6443")
    );
    assert_eq!(
        k[1].http
            .authorization
            .as_ref()
            .unwrap()
            .credentials
            .expose(),
        "abc"
    );
    assert!(k[1].http.tls_config.insecure_skip_verify);
    assert_eq!(
        k[2].kubeconfig_file.as_deref(),
        Some(dir.join("kube/config").as_path())
    );
    assert!(k[3].namespaces.own_namespace);

    let b = &cfg.scrape_configs[2];
    let a = b.http.authorization.as_ref().unwrap();
    assert_eq!(
        (a.r#type.as_str(), a.credentials.expose()),
        ("Bearer", "s3cret")
    );
    // The global timeout (5s) exceeds the job interval (2s): capped.
    assert_eq!(b.scrape_interval, Duration::from_secs(2));
    assert_eq!(b.scrape_timeout, Duration::from_secs(2));

    // The text is kept verbatim; the effective config parses back to the same.
    assert_eq!(cfg.source(), std::fs::read_to_string(&path).unwrap());
    let printed = cfg.to_yaml();
    assert!(!printed.contains("s3cret"), "secrets are hidden");
    assert!(printed.contains("credentials: <secret>"));
}

#[test]
fn defaults() {
    let cfg = Config::load("").unwrap();
    assert_eq!(cfg.global.scrape_interval, Duration::from_secs(60));
    assert_eq!(cfg.global.scrape_timeout, Duration::from_secs(10));
    assert_eq!(cfg.global.evaluation_interval, Duration::from_secs(60));
    assert!(cfg.scrape_configs.is_empty());

    let cfg =
        Config::load("global:\n  scrape_interval: 5s\nscrape_configs:\n- job_name: x\n").unwrap();
    assert_eq!(
        cfg.global.scrape_timeout,
        Duration::from_secs(5),
        "timeout capped at interval"
    );
    let j = &cfg.scrape_configs[0];
    assert_eq!(
        (j.scrape_interval, j.scrape_timeout),
        (Duration::from_secs(5), Duration::from_secs(5))
    );
    assert!(j.honor_timestamps);
    assert_eq!(j.body_size_limit, 0);
    assert_eq!(j.sample_limit, 0);
}

#[test]
fn effective_config_prints_like_prometheus() {
    let cfg = Config::load(concat!(
        "global:\n  scrape_interval: 15s\n",
        "scrape_configs:\n",
        "- job_name: prometheus\n",
        "  relabel_configs:\n  - source_labels: [a, b]\n    target_label: c\n",
        "  static_configs:\n  - targets: ['localhost:9090']\n",
    ))
    .unwrap();
    let want = "\
global:
  scrape_interval: 15s
  scrape_timeout: 10s
  evaluation_interval: 1m
scrape_configs:
- job_name: prometheus
  honor_timestamps: true
  scrape_interval: 15s
  scrape_timeout: 10s
  metrics_path: /metrics
  scheme: http
  follow_redirects: true
  enable_http2: true
  relabel_configs:
  - source_labels: [a, b]
    separator: ;
    regex: (.*)
    target_label: c
    replacement: $1
    action: replace
  static_configs:
  - targets:
    - localhost:9090
";
    assert_eq!(cfg.to_yaml(), want);
}

#[test]
fn effective_config_round_trips() {
    let cfg = Config::load_file(&testdata("good.yml")).unwrap();
    let again = Config::load(&cfg.to_yaml()).unwrap();
    // Paths are absolute after load_file, so they survive the trip; only the
    // secrets (printed as <secret>) differ.
    assert_eq!(again.global, cfg.global);
    assert_eq!(again.scrape_configs.len(), cfg.scrape_configs.len());
    for (a, b) in again.scrape_configs.iter().zip(&cfg.scrape_configs) {
        assert_eq!(a.job_name, b.job_name);
        assert_eq!(a.relabel_configs, b.relabel_configs);
        assert_eq!(a.metric_relabel_configs, b.metric_relabel_configs);
        assert_eq!(a.static_configs, b.static_configs);
        assert_eq!(a.file_sd_configs, b.file_sd_configs);
        assert_eq!(a.params, b.params);
        assert_eq!(
            (a.scrape_interval, a.scrape_timeout),
            (b.scrape_interval, b.scrape_timeout)
        );
        assert_eq!(a.http.tls_config, b.http.tls_config);
        assert_eq!(a.kubernetes_sd_configs.len(), b.kubernetes_sd_configs.len());
    }
}

/// (yaml, line, field, message fragment)
const BAD: &[(&str, usize, &str, &str)] = &[
    ("global:\n  scrape_interval: 5s\n  scrape_timeout: 10s\n", 3, "global.scrape_timeout", "global scrape timeout greater than scrape interval"),
    ("global:\n  scrape_interval: 5x\n", 2, "scrape_interval", "not a valid duration string"),
    ("global:\n  external_labels:\n    bad-name: x\n", 3, "bad-name", "\"bad-name\" is not a valid label name"),
    ("global:\n  foo: 1\n", 2, "foo", "unknown field"),
    ("scrape_configs:\n- job_name: a\n- job_name: a\n", 3, "scrape_configs[1].job_name", "found multiple scrape configs with job name \"a\""),
    ("scrape_configs:\n- job_name: a\n  scrape_interval: 5s\n  scrape_timeout: 6s\n", 4, "scrape_configs[0].scrape_timeout", "scrape timeout greater than scrape interval for scrape config with job name \"a\""),
    ("scrape_configs:\n- scrape_interval: 5s\n", 2, "scrape_configs[0].job_name", "job_name is empty"),
    ("scrape_configs:\n- job_name: a\n  scheme: ftp\n", 3, "scrape_configs[0].scheme", "invalid scheme \"ftp\""),
    ("scrape_configs:\n- job_name: a\n  metric_path: /x\n", 3, "metric_path", "unknown field"),
    ("scrape_configs:\n- job_name: a\n  consul_sd_configs: []\n", 3, "consul_sd_configs", "not supported"),
    ("remote_write:\n- url: http://x\n", 1, "remote_write", "not supported"),
    ("scrape_configs:\n- job_name: a\n  relabel_configs:\n  - regex: '(('\n    target_label: x\n", 4, "scrape_configs[0].relabel_configs[0].regex", "invalid regex"),
    ("scrape_configs:\n- job_name: a\n  relabel_configs:\n  - action: explode\n", 4, "scrape_configs[0].relabel_configs[0].action", "unknown relabel action \"explode\""),
    ("scrape_configs:\n- job_name: a\n  relabel_configs:\n  - source_labels: [a]\n", 4, "scrape_configs[0].relabel_configs[0].target_label", "relabel configuration for replace action requires 'target_label' value"),
    ("scrape_configs:\n- job_name: a\n  relabel_configs:\n  - source_labels: [a]\n    target_label: 0bad\n", 4, "scrape_configs[0].relabel_configs[0].target_label", "\"0bad\" is invalid 'target_label' for replace action"),
    ("scrape_configs:\n- job_name: a\n  metric_relabel_configs:\n  - action: hashmod\n    target_label: x\n", 4, "scrape_configs[0].metric_relabel_configs[0].modulus", "requires non-zero modulus"),
    ("scrape_configs:\n- job_name: a\n  relabel_configs:\n  - source_labels: [bad-label]\n", 4, "source_labels", "\"bad-label\" is not a valid label name"),
    ("scrape_configs:\n- job_name: a\n  static_configs:\n  - targets: ['http://x:1/metrics']\n", 4, "scrape_configs[0].static_configs[0].targets", "is not a valid hostname"),
    ("scrape_configs:\n- job_name: a\n  bearer_token: x\n  bearer_token_file: y\n", 4, "scrape_configs[0].bearer_token_file", "at most one of bearer_token & bearer_token_file"),
    ("scrape_configs:\n- job_name: a\n  basic_auth:\n    username: u\n  bearer_token: x\n", 5, "scrape_configs[0].bearer_token", "at most one of basic_auth, oauth2, bearer_token & bearer_token_file"),
    ("scrape_configs:\n- job_name: a\n  authorization:\n    type: Basic\n", 4, "scrape_configs[0].authorization.type", "authorization type cannot be set to \"basic\""),
    ("scrape_configs:\n- job_name: a\n  basic_auth:\n    username: u\n    password: p\n    password_file: f\n", 4, "scrape_configs[0].basic_auth", "at most one of basic_auth password & password_file"),
    ("scrape_configs:\n- job_name: a\n  tls_config:\n    cert_file: c\n", 4, "scrape_configs[0].tls_config", "client cert file specified without client key file"),
    ("scrape_configs:\n- job_name: a\n  body_size_limit: 10QB\n", 3, "body_size_limit", "unknown unit"),
    ("scrape_configs:\n- job_name: a\n  file_sd_configs:\n  - files: [targets.txt]\n", 4, "scrape_configs[0].file_sd_configs[0].files", "path name \"targets.txt\" is not valid for file discovery"),
    ("scrape_configs:\n- job_name: a\n  file_sd_configs:\n  - refresh_interval: 1m\n", 4, "scrape_configs[0].file_sd_configs[0].files", "must contain at least one path name"),
    ("scrape_configs:\n- job_name: a\n  kubernetes_sd_configs:\n  - role: deployment\n", 4, "scrape_configs[0].kubernetes_sd_configs[0].role", "unknown Kubernetes SD role \"deployment\""),
    ("scrape_configs:\n- job_name: a\n  kubernetes_sd_configs:\n  - role: ingress\n", 4, "scrape_configs[0].kubernetes_sd_configs[0].role", "role \"ingress\" is not supported by strata"),
    ("scrape_configs:\n- job_name: a\n  kubernetes_sd_configs:\n  - api_server: https://x\n", 4, "scrape_configs[0].kubernetes_sd_configs[0].role", "role missing"),
    ("scrape_configs:\n- job_name: a\n  kubernetes_sd_configs:\n  - role: pod\n    api_server: https://x\n    kubeconfig_file: k\n", 4, "scrape_configs[0].kubernetes_sd_configs[0]", "cannot use 'kubeconfig_file' and 'api_server' simultaneously"),
    ("scrape_configs:\n- job_name: a\n  kubernetes_sd_configs:\n  - role: pod\n    bearer_token: t\n", 4, "scrape_configs[0].kubernetes_sd_configs[0]", "please provide the 'api_server' URL explicitly"),
    ("scrape_configs:\n- job_name: a\n  kubernetes_sd_configs:\n  - role: pod\n    api_server: https://x\n    namespaces:\n      own_namespace: true\n", 4, "scrape_configs[0].kubernetes_sd_configs[0].namespaces.own_namespace", "cannot use 'api_server' and 'namespaces.own_namespace'"),
    ("scrape_configs:\n- job_name: a\n  kubernetes_sd_configs:\n  - role: node\n    selectors:\n    - role: pod\n", 4, "scrape_configs[0].kubernetes_sd_configs[0].selectors[0].role", "node role supports only node selectors"),
    ("scrape_configs:\n- job_name: a\n  kubernetes_sd_configs:\n  - role: pod\n    selectors:\n    - role: pod\n    - role: pod\n", 4, "scrape_configs[0].kubernetes_sd_configs[0].selectors[1].role", "duplicated selector role: pod"),
    ("scrape_configs:\n- job_name: a\n  kubernetes_sd_configs:\n  - role: pod\n    namespaces:\n      name: [x]\n", 6, "name", "unknown field"),
    ("scrape_configs:\n- job_name: a\n  honor_labels: maybe\n", 3, "honor_labels", ""),
    ("scrape_configs: [\n", 1, "scrape_configs", ""),
];

#[test]
fn bad_configs_say_where() {
    for (yaml, line, field, msg) in BAD {
        let e = match Config::load(yaml) {
            Ok(_) => panic!("accepted:\n{yaml}"),
            Err(e) => e,
        };
        let shown = e.to_string();
        assert!(e.line > 0, "no line for:\n{yaml}\n{shown}");
        if *line > 0 && !yaml.starts_with("scrape_configs: [") {
            assert_eq!(e.line, *line, "line for:\n{yaml}\n{shown}");
        }
        assert_eq!(e.field, *field, "field for:\n{yaml}\n{shown}");
        assert!(e.message.contains(msg), "message for:\n{yaml}\n{shown}");
        assert!(shown.contains(&format!("line {}", e.line)), "{shown}");
    }
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("prometheus.yml");
    std::fs::write(&p, "scrape_configs:\n- job_name: a\n  sample_limt: 1\n").unwrap();
    let e = Config::load_file(&p).unwrap_err();
    assert_eq!(e.file.as_deref(), Some(p.as_path()));
    assert_eq!(e.line, 3);
    let shown = e.to_string();
    assert!(shown.starts_with(&p.display().to_string()), "{shown}");
    assert!(shown.contains("sample_limt"), "{shown}");
    let missing = Config::load_file(&dir.path().join("nope.yml")).unwrap_err();
    assert!(missing.message.contains("No such file"), "{missing}");
}
