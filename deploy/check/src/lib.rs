//! Reading the Grafana dashboards of `deploy/dashboards/` the way Grafana
//! would, so that tests (here and end to end) can run their queries.
//!
//! The main types:
//! - [`PanelQuery`]: one PromQL query of one panel target (`expr`), with the
//!   panel title so that a failure names the panel a person sees.
//! - [`VariableQuery`]: a template variable's `label_values(...)` query,
//!   which Grafana does not send as PromQL but as a label-values API call
//!   ([`VariableQuery::api_path`]).
//! - [`Dashboard`]: both lists, read from a dashboard JSON by
//!   [`Dashboard::parse`] (or [`Dashboard::load_multicluster`] for the
//!   shipped one).
//!
//! Grafana substitutes its variables before it sends a query; PromQL cannot
//! parse `[$__rate_interval]`. [`substitute`] does the same substitution
//! with the values the demo uses (`$cluster` → `.+`, the interval macros →
//! `1m`), and refuses a variable it does not know rather than leaving it in.
//! [`check_query`] then parses the result with strata's own PromQL parser
//! and checks that every selector is filtered by the `cluster` variable, so
//! that no panel ignores the cluster picker.
//!
//! This crate is test support: it has no binary and is not published.

use std::path::{Path, PathBuf};

use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use promql_parser::util::{walk_expr, ExprVisitor};

/// The value `$cluster` takes in checks: what Grafana sends for "All"
/// (the dashboard's `allValue`).
pub const CLUSTER_ALL: &str = ".+";
/// The value of `$__rate_interval`, `$__interval` and `$__range` in checks:
/// four demo scrape intervals, Grafana's lower bound for `$__rate_interval`.
pub const DEMO_INTERVAL: &str = "1m";
/// Largest dashboard file read, in bytes (the shipped one is ~25 KiB).
pub const MAX_DASHBOARD_BYTES: usize = 4 << 20;

/// The metric names the demo exporters serve (cAdvisor, node-exporter,
/// kube-state-metrics, API server, scheduler). Dashboard queries may use
/// only these, so every panel has data in the demo; a real cluster serves
/// them too, under the same names.
pub const DEMO_METRICS: &[&str] = &[
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    "container_network_receive_bytes_total",
    "container_network_transmit_bytes_total",
    "node_cpu_seconds_total",
    "node_memory_MemTotal_bytes",
    "node_memory_MemAvailable_bytes",
    "node_filesystem_size_bytes",
    "node_filesystem_avail_bytes",
    "kube_pod_info",
    "kube_pod_status_phase",
    "kube_namespace_status_phase",
    "kube_persistentvolumeclaim_info",
    "kube_persistentvolumeclaim_status_phase",
    "apiserver_request_total",
    "apiserver_request_duration_seconds_bucket",
    "scheduler_pending_pods",
];

/// Why a dashboard or one of its queries is not usable.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {size} bytes is more than the {limit} bytes allowed for a dashboard")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: usize,
    },
    #[error("dashboard is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("dashboard: {0}")]
    Shape(String),
    #[error("panel {panel:?} target {ref_id}: {message}")]
    Query {
        panel: String,
        ref_id: String,
        message: String,
    },
    #[error("template variable {name:?}: {message}")]
    Variable { name: String, message: String },
}

/// One PromQL query of one panel target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PanelQuery {
    /// The panel's title, with its row's title before it (`Row / Panel`).
    pub panel: String,
    /// The target's `refId` (A, B, ...).
    pub ref_id: String,
    /// The query as written in the dashboard, variables included.
    pub expr: String,
}

impl PanelQuery {
    /// The query with the demo's variable values substituted.
    pub fn demo_expr(&self) -> Result<String, DashboardError> {
        substitute(&self.expr).map_err(|message| self.error(message))
    }

    fn error(&self, message: String) -> DashboardError {
        DashboardError::Query {
            panel: self.panel.clone(),
            ref_id: self.ref_id.clone(),
            message,
        }
    }
}

/// A template variable's `label_values([metric,] label)` query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariableQuery {
    /// The variable's name (`cluster`).
    pub name: String,
    /// The query as written (`label_values(cluster)`).
    pub query: String,
    /// The label whose values the variable lists.
    pub label: String,
    /// The series selector limiting them, when the query names one.
    pub selector: Option<String>,
}

impl VariableQuery {
    /// The Prometheus HTTP API call Grafana makes for this variable
    /// (path and query string, without the host).
    pub fn api_path(&self) -> String {
        match &self.selector {
            None => format!("/api/v1/label/{}/values", self.label),
            Some(sel) => format!(
                "/api/v1/label/{}/values?match[]={}",
                self.label,
                percent_encode(sel)
            ),
        }
    }
}

/// Every query of a dashboard.
#[derive(Clone, Debug, Default)]
pub struct Dashboard {
    pub title: String,
    pub panels: Vec<PanelQuery>,
    pub variables: Vec<VariableQuery>,
    /// Titles of panels (not rows) that have no PromQL target at all.
    pub panels_without_queries: Vec<String>,
}

impl Dashboard {
    /// Reads the queries of a Grafana dashboard JSON (the file format of
    /// "Export" / provisioning: an object with `panels` and `templating`).
    /// Rows' nested `panels` (collapsed rows) are read too.
    pub fn parse(json: &str) -> Result<Dashboard, DashboardError> {
        let v: serde_json::Value = serde_json::from_str(json)?;
        let title = v
            .get("title")
            .and_then(|t| t.as_str())
            .ok_or_else(|| DashboardError::Shape("no \"title\"".into()))?
            .to_string();
        let panels = v
            .get("panels")
            .and_then(|p| p.as_array())
            .ok_or_else(|| DashboardError::Shape("no \"panels\" array".into()))?;
        let mut d = Dashboard {
            title,
            ..Dashboard::default()
        };
        let mut row = String::new();
        for p in panels {
            d.read_panel(p, &mut row)?;
        }
        if let Some(vars) = v.pointer("/templating/list").and_then(|l| l.as_array()) {
            for var in vars {
                if let Some(q) = read_variable(var)? {
                    d.variables.push(q);
                }
            }
        }
        Ok(d)
    }

    fn read_panel(
        &mut self,
        p: &serde_json::Value,
        row: &mut String,
    ) -> Result<(), DashboardError> {
        let title = p
            .get("title")
            .and_then(|t| t.as_str())
            .unwrap_or("(untitled)")
            .to_string();
        if p.get("type").and_then(|t| t.as_str()) == Some("row") {
            *row = title;
            // A collapsed row keeps its panels inside it.
            if let Some(inner) = p.get("panels").and_then(|x| x.as_array()) {
                let mut same_row = row.clone();
                for q in inner {
                    self.read_panel(q, &mut same_row)?;
                }
            }
            return Ok(());
        }
        let full = if row.is_empty() {
            title
        } else {
            format!("{row} / {title}")
        };
        let targets = p
            .get("targets")
            .and_then(|t| t.as_array())
            .map(|t| t.as_slice())
            .unwrap_or(&[]);
        let before = self.panels.len();
        for (i, t) in targets.iter().enumerate() {
            let Some(expr) = t.get("expr") else { continue };
            let ref_id = t
                .get("refId")
                .and_then(|r| r.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| format!("#{i}"));
            let expr = expr.as_str().ok_or_else(|| DashboardError::Query {
                panel: full.clone(),
                ref_id: ref_id.clone(),
                message: "\"expr\" is not a string".into(),
            })?;
            self.panels.push(PanelQuery {
                panel: full.clone(),
                ref_id,
                expr: expr.to_string(),
            });
        }
        if self.panels.len() == before {
            self.panels_without_queries.push(full);
        }
        Ok(())
    }

    /// The shipped multi-cluster dashboard,
    /// `deploy/dashboards/strata-multicluster.json`.
    pub fn load_multicluster() -> Result<Dashboard, DashboardError> {
        Dashboard::parse(&read_dashboard(&multicluster_path())?)
    }

    /// `queries.txt`: every panel query with the demo's values substituted,
    /// one per line as `panel [refId]<TAB>query`, and each variable as the
    /// API call Grafana makes, in a comment. End-to-end tests read it to
    /// check that every query returns data in the demo.
    pub fn queries_txt(&self) -> Result<String, DashboardError> {
        let mut out = String::new();
        out.push_str(&format!(
            "# PromQL queries of the dashboard {:?}, as the demo runs them:\n\
             # $cluster -> {CLUSTER_ALL}, $__rate_interval -> {DEMO_INTERVAL}.\n\
             # Generated from strata-multicluster.json by the strata-deploy-check tests;\n\
             # regenerate with: STRATA_BLESS=1 cargo nextest run -p strata-deploy-check\n\
             # Format: <row / panel> [<refId>]<TAB><query>\n",
            self.title
        ));
        for v in &self.variables {
            out.push_str(&format!(
                "# variable ${}: {} = GET {}\n",
                v.name,
                v.query,
                v.api_path()
            ));
        }
        for q in &self.panels {
            out.push_str(&format!("{} [{}]\t{}\n", q.panel, q.ref_id, q.demo_expr()?));
        }
        Ok(out)
    }
}

/// Where the shipped dashboard lives in the source tree.
pub fn multicluster_path() -> PathBuf {
    deploy_dir().join("dashboards/strata-multicluster.json")
}

/// `deploy/` in the source tree.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("deploy"))
}

/// Reads a dashboard file, refusing files over [`MAX_DASHBOARD_BYTES`].
pub fn read_dashboard(path: &Path) -> Result<String, DashboardError> {
    let read_err = |source| DashboardError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_err)?.len();
    if size > MAX_DASHBOARD_BYTES as u64 {
        return Err(DashboardError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit: MAX_DASHBOARD_BYTES,
        });
    }
    std::fs::read_to_string(path).map_err(read_err)
}

fn read_variable(var: &serde_json::Value) -> Result<Option<VariableQuery>, DashboardError> {
    let name = var
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_string();
    if var.get("type").and_then(|t| t.as_str()) != Some("query") {
        return Ok(None);
    }
    // Grafana 10+ stores an object {query, qryType, refId}; older versions a
    // bare string. Both are read.
    let q = match var.get("query") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(o) => o
            .get("query")
            .and_then(|q| q.as_str())
            .unwrap_or("")
            .to_string(),
        None => String::new(),
    };
    let (label, selector) = parse_label_values(&q).map_err(|message| DashboardError::Variable {
        name: name.clone(),
        message,
    })?;
    Ok(Some(VariableQuery {
        name,
        query: q,
        label,
        selector,
    }))
}

/// Splits Grafana's `label_values(label)` / `label_values(selector, label)`
/// into the label and the optional selector. The selector is checked with
/// the PromQL parser. Other variable functions (`query_result`, `metrics`,
/// ...) are refused: the dashboard does not need them.
pub fn parse_label_values(q: &str) -> Result<(String, Option<String>), String> {
    let inner = q
        .trim()
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("{q:?} is not label_values(...)"))?;
    let (selector, label) = match inner.rfind(',') {
        Some(i) => (Some(inner[..i].trim()), inner[i + 1..].trim()),
        None => (None, inner.trim()),
    };
    let valid_label = !label.is_empty()
        && label
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    if !valid_label {
        return Err(format!("{label:?} is not a label name"));
    }
    if let Some(sel) = selector {
        let sel = substitute(sel)?;
        strata_promql::parse(&sel, &strata_promql::EngineOptions::default())
            .map_err(|e| format!("selector {sel:?}: {e}"))?;
        return Ok((label.to_string(), Some(sel)));
    }
    Ok((label.to_string(), None))
}

/// Replaces Grafana variables with the demo's values: `$cluster` /
/// `${cluster}` → [`CLUSTER_ALL`]; `$__rate_interval`, `$__interval` and
/// `$__range` → [`DEMO_INTERVAL`]. Any other `$name` is an error.
pub fn substitute(expr: &str) -> Result<String, String> {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {expr:?}"))?;
            (&braced[..end], end + 2)
        } else {
            let end = after
                .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        let value = match name {
            "cluster" => CLUSTER_ALL,
            "__rate_interval" | "__interval" | "__range" => DEMO_INTERVAL,
            "" => return Err(format!("a lone '$' in {expr:?}")),
            other => return Err(format!("unknown variable ${other} in {expr:?}")),
        };
        out.push_str(value);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What [`check_query`] found in a query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryFacts {
    /// Metric names selected, in order of appearance (repeats kept).
    pub metrics: Vec<String>,
}

/// Substitutes the variables of a panel query, parses it with strata's
/// PromQL parser, and checks that every series selector has a metric name
/// and the matcher `cluster=~"$cluster"`. The error names the panel.
pub fn check_query(q: &PanelQuery) -> Result<QueryFacts, DashboardError> {
    if !q.expr.contains("cluster=~\"$cluster\"") {
        return Err(q.error("does not filter by cluster=~\"$cluster\"".into()));
    }
    let text = q.demo_expr()?;
    let expr = strata_promql::parse(&text, &strata_promql::EngineOptions::default())
        .map_err(|e| q.error(format!("{e} (query: {text})")))?;
    let mut v = SelectorCheck::default();
    walk_expr(&mut v, &expr).map_err(|m| q.error(m))?;
    if v.facts.metrics.is_empty() {
        return Err(q.error("selects no series".into()));
    }
    Ok(v.facts)
}

#[derive(Default)]
struct SelectorCheck {
    facts: QueryFacts,
}

impl SelectorCheck {
    fn check(&mut self, vs: &promql_parser::parser::VectorSelector) -> Result<(), String> {
        let name = vs
            .name
            .clone()
            .or_else(|| {
                vs.matchers
                    .matchers
                    .iter()
                    .find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
                    .map(|m| m.value.clone())
            })
            .ok_or_else(|| format!("selector {vs} has no metric name"))?;
        let filtered = vs.matchers.matchers.iter().any(|m| {
            m.name == "cluster" && matches!(m.op, MatchOp::Re(_)) && m.value == CLUSTER_ALL
        });
        if !filtered || !vs.matchers.or_matchers.is_empty() {
            return Err(format!(
                "selector {vs} is not filtered by cluster=~\"$cluster\""
            ));
        }
        self.facts.metrics.push(name);
        Ok(())
    }
}

impl ExprVisitor for SelectorCheck {
    type Error = String;

    fn pre_visit(&mut self, e: &Expr) -> Result<bool, String> {
        match e {
            Expr::VectorSelector(vs) => self.check(vs)?,
            Expr::MatrixSelector(ms) => self.check(&ms.vs)?,
            _ => {}
        }
        Ok(true)
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for a
/// selector in a query string.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_known_variables_only() {
        assert_eq!(
            substitute("rate(x{cluster=~\"$cluster\"}[$__rate_interval])").unwrap(),
            "rate(x{cluster=~\".+\"}[1m])"
        );
        assert_eq!(
            substitute("x{cluster=~\"${cluster}\"}").unwrap(),
            "x{cluster=~\".+\"}"
        );
        assert!(substitute("x{job=\"$job\"}").unwrap_err().contains("$job"));
        assert!(substitute("x{a=\"${cluster\"}").is_err());
    }

    #[test]
    fn label_values_forms() {
        assert_eq!(
            parse_label_values("label_values(cluster)").unwrap(),
            ("cluster".into(), None)
        );
        assert_eq!(
            parse_label_values("label_values(up{job=\"a\"}, cluster)").unwrap(),
            ("cluster".into(), Some("up{job=\"a\"}".into()))
        );
        assert!(parse_label_values("query_result(up)").is_err());
        assert!(parse_label_values("label_values(up{, cluster)").is_err());
        assert!(parse_label_values("label_values(1abc)").is_err());
    }

    #[test]
    fn unfiltered_selector_is_refused_with_panel_title() {
        let q = PanelQuery {
            panel: "Row / CPU".into(),
            ref_id: "B".into(),
            expr: "sum(x{cluster=~\"$cluster\"}) / sum(y)".into(),
        };
        let e = check_query(&q).unwrap_err().to_string();
        assert!(
            e.contains("Row / CPU") && e.contains("y") && e.contains("not filtered"),
            "{e}"
        );
        let bad = PanelQuery {
            expr: "sum(rate(x{cluster=~\"$cluster\"}[$__rate_interval])".into(),
            ..q.clone()
        };
        let e = check_query(&bad).unwrap_err().to_string();
        assert!(e.contains("Row / CPU") && e.contains("parse error"), "{e}");
    }

    #[test]
    fn variable_api_path_encodes_selector() {
        let v = VariableQuery {
            name: "c".into(),
            query: String::new(),
            label: "cluster".into(),
            selector: Some("up{a=\"b\"}".into()),
        };
        assert_eq!(
            v.api_path(),
            "/api/v1/label/cluster/values?match[]=up%7Ba%3D%22b%22%7D"
        );
    }
}
