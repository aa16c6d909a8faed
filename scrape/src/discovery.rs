//! Service discovery: where targets come from.
//!
//! A discovery mechanism produces [`TargetGroup`]s: lists of addresses that
//! share a set of labels, as Prometheus' `targetgroup.Group`. Two mechanisms
//! exist today:
//!
//! * **static** — `static_configs` in the config; the groups never change.
//! * **file** — [`FileDiscovery`], Prometheus' `file_sd_configs`: JSON or
//!   YAML files holding a list of `{targets: [...], labels: {...}}` groups.
//!   Paths may contain a `*` in their last element. Each group gets the
//!   label `__meta_filepath` with the file it came from. The
//!   [`crate::manager::ScrapeManager`] polls files every
//!   `refresh_interval` (Prometheus also uses inotify; polling the
//!   modification time is simpler and good enough at a 5 minute default)
//!   and re-reads them on every config reload. A file that fails to read or
//!   parse keeps its previous groups (the error is logged), so a half-written
//!   file never drops all targets; a file that disappears drops its groups.
//!
//! * **kubernetes** — [`crate::kubernetes::KubernetesDiscovery`], list and
//!   watch of the Kubernetes API; its groups carry per-target labels
//!   ([`TargetGroup::target_labels`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::{parse_target_groups_yaml, FileSdConfig, RawTargetGroup};

/// The label file_sd sets on every group it reads.
pub const FILEPATH_LABEL: &str = "__meta_filepath";

/// A group of targets sharing labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetGroup {
    /// Target addresses (`host:port`), each becoming `__address__`.
    pub targets: Vec<String>,
    /// Labels of single targets, parallel to `targets` (index `i` belongs
    /// to `targets[i]`); they win over the group's `labels`. Empty when the
    /// discovery has none (static and file groups); Kubernetes discovery
    /// fills it (container ports, endpoint conditions, ...).
    pub target_labels: Vec<BTreeMap<String, String>>,
    /// Labels common to every target of the group.
    pub labels: BTreeMap<String, String>,
    /// Identifies the group within its discovery (`file:index` for file_sd,
    /// the index for static configs, `pod/<ns>/<name>` etc. for Kubernetes).
    pub source: String,
}

/// What a file looked like when last read successfully.
#[derive(Clone, Debug)]
struct FileState {
    mtime: Option<SystemTime>,
    len: u64,
    groups: Vec<TargetGroup>,
}

/// File-based discovery for one `file_sd_configs` entry.
#[derive(Debug)]
pub struct FileDiscovery {
    config: FileSdConfig,
    files: BTreeMap<PathBuf, FileState>,
}

impl FileDiscovery {
    pub fn new(config: FileSdConfig) -> Self {
        FileDiscovery {
            config,
            files: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &FileSdConfig {
        &self.config
    }

    /// Expands the globs, reads new and changed files (all files when
    /// `force`), forgets vanished ones. Returns whether the groups changed.
    /// Errors are logged and leave that file's previous groups in place.
    pub fn refresh(&mut self, force: bool) -> bool {
        let paths = self.expand();
        let mut changed = false;
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !paths.contains(*p))
            .cloned()
            .collect();
        for p in gone {
            self.files.remove(&p);
            changed = true;
        }
        for p in paths {
            let meta = match std::fs::metadata(&p) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(file = %p.display(), error = %e, "file_sd: cannot stat file");
                    continue;
                }
            };
            let mtime = meta.modified().ok();
            if !force {
                if let Some(st) = self.files.get(&p) {
                    if st.mtime == mtime && st.len == meta.len() {
                        continue;
                    }
                }
            }
            match read_file(&p) {
                Ok(groups) => {
                    let same = self.files.get(&p).map(|s| s.groups == groups) == Some(true);
                    changed |= !same;
                    self.files.insert(
                        p,
                        FileState {
                            mtime,
                            len: meta.len(),
                            groups,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(file = %p.display(), error = %e,
                        "file_sd: error reading file, keeping its previous targets");
                }
            }
        }
        changed
    }

    /// All groups, in file order.
    pub fn groups(&self) -> Vec<TargetGroup> {
        self.files
            .values()
            .flat_map(|s| s.groups.iter().cloned())
            .collect()
    }

    fn expand(&self) -> BTreeSet<PathBuf> {
        let mut out = BTreeSet::new();
        for pat in &self.config.files {
            let s = pat.to_string_lossy();
            if !s.contains(['*', '?', '[']) {
                if pat.exists() {
                    out.insert(pat.clone());
                }
                continue;
            }
            match glob::glob(&s) {
                Ok(paths) => {
                    for p in paths.flatten() {
                        if p.is_file() {
                            out.insert(p);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(pattern = %s, error = %e, "file_sd: invalid glob");
                }
            }
        }
        out
    }
}

/// Reads one file_sd file. The format follows the extension: `.json`, or
/// `.yml`/`.yaml` (any case).
pub fn read_file(path: &Path) -> Result<Vec<TargetGroup>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let raw: Vec<RawTargetGroup> = match ext.as_str() {
        "json" => serde_json::from_str::<Vec<RawTargetGroup>>(&text).map_err(|e| e.to_string())?,
        "yml" | "yaml" => parse_target_groups_yaml(&text)?,
        other => return Err(format!("unsupported file extension {other:?}")),
    };
    let name = path.display().to_string();
    Ok(raw
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let mut g = g.into_group(format!("{name}:{i}"));
            g.labels.insert(FILEPATH_LABEL.to_string(), name.clone());
            g
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(files: Vec<PathBuf>) -> FileSdConfig {
        FileSdConfig {
            files,
            refresh_interval: Duration::from_secs(300),
        }
    }

    #[test]
    fn json_and_yaml_with_glob() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.json"),
            r#"[{"targets": ["h1:80", "h2:80"], "labels": {"env": "prod"}}, {"targets": ["h3:9"]}]"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.yml"),
            "- targets: ['y1:1']\n  labels:\n    team: x\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("ignored.txt"), "junk").unwrap();
        let mut d = FileDiscovery::new(cfg(vec![
            dir.path().join("*.json"),
            dir.path().join("b.yml"),
        ]));
        assert!(d.refresh(false));
        let g = d.groups();
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].targets, vec!["h1:80", "h2:80"]);
        assert_eq!(g[0].labels.get("env").map(String::as_str), Some("prod"));
        let a = dir.path().join("a.json").display().to_string();
        assert_eq!(g[0].labels.get(FILEPATH_LABEL), Some(&a));
        assert_eq!(g[1].source, format!("{a}:1"));
        assert_eq!(g[2].targets, vec!["y1:1"]);
        assert_eq!(g[2].labels.get("team").map(String::as_str), Some("x"));
        // Nothing changed: no change reported.
        assert!(!d.refresh(false));
    }

    #[test]
    fn bad_file_keeps_previous_targets_and_removal_drops_them() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.json");
        std::fs::write(&f, r#"[{"targets": ["a:1"]}]"#).unwrap();
        let mut d = FileDiscovery::new(cfg(vec![f.clone()]));
        d.refresh(false);
        assert_eq!(d.groups()[0].targets, vec!["a:1"]);
        std::fs::write(&f, r#"[{"targets": ["a:1"], "bogus": 1}, "#).unwrap();
        d.refresh(true);
        assert_eq!(d.groups()[0].targets, vec!["a:1"]);
        // Unknown fields are errors too.
        std::fs::write(&f, r#"[{"targets": ["b:1"], "bogus": 1}]"#).unwrap();
        d.refresh(true);
        assert_eq!(d.groups()[0].targets, vec!["a:1"]);
        // Invalid label names are errors.
        std::fs::write(&f, r#"[{"targets": ["b:1"], "labels": {"a-b": "x"}}]"#).unwrap();
        d.refresh(true);
        assert_eq!(d.groups()[0].targets, vec!["a:1"]);
        std::fs::write(&f, r#"[{"targets": ["b:1"]}]"#).unwrap();
        assert!(d.refresh(true));
        assert_eq!(d.groups()[0].targets, vec!["b:1"]);
        std::fs::remove_file(&f).unwrap();
        assert!(d.refresh(false));
        assert!(d.groups().is_empty());
    }

    #[test]
    fn yaml_errors_have_positions() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.yaml");
        std::fs::write(&f, "- targets: ['a:1']\n  lables: {}\n").unwrap();
        let e = read_file(&f).unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("lables"), "{e}");
    }
}
